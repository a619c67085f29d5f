import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  linkSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

import { native } from '../../lib/native/binding.js';
import { getXattrSync, listXattrsSync, mknodSync, setXattrSync, statfsSync, whiteoutSync } from '../../lib/native/fs.js';
import { mount, unmount } from '../../lib/native/mount.js';
import { copyTree, type TreeCopyStats } from '../../lib/native/tree.js';
import { Cleanups, isRoot, rejection, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { fsImage, type ImageFs } from '../support/images.js';
import { userXattrsWork } from '../support/vm.js';


function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

const MiB = 1024 * 1024;

/** Sets atime and mtime to an instant with nanoseconds, without following symlinks. */
function touch(path: string, seconds: number, nanoseconds: number): void {
  execFileSync('touch', ['-h', '-d', `@${seconds}.${String(nanoseconds).padStart(9, '0')}`, path]);
}

/** security.capability v2 granting CAP_NET_BIND_SERVICE (bit 10), effective. */
const capability = Buffer.alloc(20);
capability.writeUInt32LE(0x02000001, 0);
capability.writeUInt32LE(1 << 10, 4);

/**
 * A tree with every file type, a hard-linked pair (and a triple across
 * directories), setuid/setgid modes, foreign owners, user/trusted/security
 * xattrs, a sparse file, long names, deep nesting and nanosecond timestamps.
 * Returns how many regular files (inodes) it has.
 */
function makeTree(root: string): number {
  let files = 0;
  const file = (path: string, data: string | Buffer): void => {
    writeFileSync(join(root, path), data);
    files++;
  };
  mkdirSync(join(root, 'dir/sub'), { recursive: true });
  file('plain', 'plain data');
  file('dir/sub/data', Buffer.alloc(300_000, 7));
  file('empty', '');
  file('setuid', '#!/bin/sh\n');
  lchownSync(join(root, 'setuid'), 1000, 1001);
  chmodSync(join(root, 'setuid'), 0o4755);
  mkdirSync(join(root, 'setgid-dir'));
  lchownSync(join(root, 'setgid-dir'), 0, 1002);
  chmodSync(join(root, 'setgid-dir'), 0o2775);
  file('setgid-dir/inside', 'x');
  file('capable', 'binary');
  setXattrSync(join(root, 'capable'), 'security.capability', capability);
  setXattrSync(join(root, 'plain'), 'trusted.strata', Buffer.from([0, 1, 2, 255]));
  setXattrSync(join(root, 'dir'), 'trusted.overlay.opaque', 'y');
  // tmpfs (the VM's /tmp, on Linux 6.1) has user.* xattrs only since 6.6.
  if (userXattrsWork(root)) {
    setXattrSync(join(root, 'plain'), 'user.note', 'hello');
    setXattrSync(join(root, 'dir'), 'user.big', Buffer.alloc(500, 'v'));
  }

  file('linked-a', 'shared inode');
  linkSync(join(root, 'linked-a'), join(root, 'linked-b'));
  file('dir/triple', 'three names');
  linkSync(join(root, 'dir/triple'), join(root, 'dir/sub/triple2'));
  linkSync(join(root, 'dir/triple'), join(root, 'triple3'));

  symlinkSync('plain', join(root, 'rel-link'));
  linkSync(join(root, 'rel-link'), join(root, 'rel-link-2')); // a hard-linked symlink
  symlinkSync('/etc', join(root, 'abs-dir-link')); // must be copied, not followed
  symlinkSync('../../nowhere', join(root, 'dir/dangling'));
  lchownSync(join(root, 'rel-link'), 1003, 1004);
  setXattrSync(join(root, 'rel-link'), 'trusted.on-link', 'l');
  mknodSync(join(root, 'null'), 'char', 0o666, 1, 3);
  mknodSync(join(root, 'loopdev'), 'block', 0o660, 7, 200);
  mknodSync(join(root, 'fifo'), 'fifo', 0o620);
  mknodSync(join(root, 'socket'), 'socket', 0o700);
  whiteoutSync(join(root, 'dir/whiteout'));

  // Modes open() would not give a new file (the umask clears 0o022), and a
  // setuid bit without the chown that makes the copier set the mode again.
  file('all-write', 'w');
  chmodSync(join(root, 'all-write'), 0o666);
  file('setuid-root', 'r');
  chmodSync(join(root, 'setuid-root'), 0o4755);
  file('sticky', 's');
  chmodSync(join(root, 'sticky'), 0o1777);
  // A small file with a hole: 4 KiB of data in 60 KiB.
  writeFileSync(join(root, 'small-sparse'), Buffer.alloc(4096, 3));
  execFileSync('truncate', ['-s', '60K', join(root, 'small-sparse')]);
  files++;

  // 4 KiB of data at 0 and at 24 MiB in a 32 MiB file: holes elsewhere.
  const fd = openSync(join(root, 'sparse'), 'w');
  writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 0);
  writeSync(fd, Buffer.alloc(4096, 2), 0, 4096, 24 * MiB);
  closeSync(fd);
  execFileSync('truncate', ['-s', '32M', join(root, 'sparse')]);
  files++;

  const longName = 'n'.repeat(255);
  mkdirSync(join(root, longName));
  file(join(longName, longName), 'long');
  let deep = join(root, 'deep');
  for (let i = 0; i < 40; i++) deep = join(deep, `level${i}`);
  mkdirSync(deep, { recursive: true });
  file(join(deep.slice(root.length + 1), 'bottom'), 'deep down');

  touch(join(root, 'plain'), 981173106, 123456789);
  touch(join(root, 'rel-link'), 1000000000, 999999999);
  touch(join(root, 'fifo'), 1234567890, 1);
  touch(join(root, 'dir/sub'), 1500000000, 500000000);
  touch(join(root, 'dir'), 1600000000, 42);
  touch(root, 1700000000, 7);
  return files;
}

interface Node {
  path: string;
  stat: ReturnType<typeof lstatSync> & { mtimeNs: bigint };
}

/** Every entry below `root` (root included, as ''), with bigint lstat. */
function walk(root: string, rel = ''): Node[] {
  const path = join(root, rel);
  const stat = lstatSync(path, { bigint: true });
  const nodes: Node[] = [{ path: rel, stat: stat as unknown as Node['stat'] }];
  if (stat.isDirectory()) {
    for (const name of readdirSync(path).sort()) nodes.push(...walk(root, rel ? join(rel, name) : name));
  }
  return nodes;
}

function xattrsOf(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of listXattrsSync(path).sort()) out[name] = getXattrSync(path, name).toString('hex');
  return out;
}

/** Asserts that `dst` is a faithful copy of `src`. */
function expectSameTree(src: string, dst: string): void {
  const a = walk(src);
  const b = walk(dst);
  expect(b.map((n) => n.path)).to.deep.equal(a.map((n) => n.path));
  const srcInodes = new Map<bigint, string>();
  const dstInodes = new Map<bigint, string>();
  for (let i = 0; i < a.length; i++) {
    const s = a[i]!;
    const d = b[i]!;
    const where = s.path || '(root)';
    const ss = s.stat as unknown as import('node:fs').BigIntStats;
    const ds = d.stat as unknown as import('node:fs').BigIntStats;
    expect(ds.mode, `${where} mode`).to.equal(ss.mode);
    expect([ds.uid, ds.gid], `${where} owner`).to.deep.equal([ss.uid, ss.gid]);
    expect(ds.mtimeNs, `${where} mtime`).to.equal(ss.mtimeNs);
    expect(xattrsOf(join(dst, s.path)), `${where} xattrs`).to.deep.equal(xattrsOf(join(src, s.path)));
    if (ss.isDirectory()) continue;
    expect(ds.nlink, `${where} links`).to.equal(ss.nlink);
    // The same inode in src is the same inode in dst.
    const first = srcInodes.get(ss.ino);
    if (first === undefined) srcInodes.set(ss.ino, s.path);
    else expect(dstInodes.get(ds.ino), `${where} hard link`).to.equal(first);
    dstInodes.set(ds.ino, dstInodes.get(ds.ino) ?? s.path);
    if (ss.isFile()) {
      expect(readFileSync(join(dst, s.path)).equals(readFileSync(join(src, s.path))), `${where} data`).to.equal(true);
    } else if (ss.isSymbolicLink()) {
      expect(readlinkSync(join(dst, s.path)), `${where} target`).to.equal(readlinkSync(join(src, s.path)));
    } else if (ss.isCharacterDevice() || ss.isBlockDevice()) {
      expect(ds.rdev, `${where} rdev`).to.equal(ss.rdev);
    }
  }
}

/** Counts of the tree made by makeTree (regular files given). */
function expectCounts(stats: TreeCopyStats, files: number): void {
  expect(stats).to.include({ files, dirs: 45, symlinks: 3, hardlinks: 4, specials: 5 });
  expect(stats.reflinked + stats.copyRanged + stats.copied).to.equal(files);
}

/** The sparse files of makeTree are as sparse in the copy. */
function expectHolesKept(src: string, dst: string): void {
  for (const name of ['sparse', 'small-sparse']) {
    expect(statSync(join(dst, name)).blocks, name).to.equal(statSync(join(src, name)).blocks);
  }
}

function syncFs(path: string): void {
  execFileSync('sync', ['-f', path]);
}

describe('native tree copy', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  for (const fstype of ['xfs', 'btrfs'] as const satisfies readonly ImageFs[]) {
    it(`copies every file type faithfully on ${fstype}, reflinking every file`, async function () {
      const mnt = await fsImage(cleanups, fstype);
      const src = join(mnt, 'src');
      mkdirSync(src);
      const files = makeTree(src);
      // Some real data, to see that reflinks do not take space.
      writeFileSync(join(src, 'dir/big'), Buffer.alloc(48 * MiB, 0x5a));
      // An xattr value and a list of names longer than the copier's buffers on the stack.
      writeFileSync(join(src, 'xattrs'), 'x');
      setXattrSync(join(src, 'xattrs'), 'trusted.big', Buffer.alloc(10_000, 3));
      for (let i = 0; i < 40; i++) setXattrSync(join(src, 'xattrs'), `trusted.a-longer-name-${i}`, String(i));
      syncFs(mnt);
      const freeBefore = statfsSync(mnt).blocksAvailable * statfsSync(mnt).blockSize;

      const dst = join(mnt, 'dst');
      const stats = await copyTree(src, dst);
      expectCounts(stats, files + 2);
      expect(stats).to.include({ reflinked: files + 2, copyRanged: 0, copied: 0 });
      expect(stats.bytes).to.equal(32 * MiB + 48 * MiB + 60 * 1024 + 300_000 + 67);
      expectSameTree(src, dst);
      expectHolesKept(src, dst);

      syncFs(mnt);
      const freeAfter = statfsSync(mnt).blocksAvailable * statfsSync(mnt).blockSize;
      expect(freeBefore - freeAfter, 'space used by the copy').to.be.lessThan(8 * MiB);
    });
  }

  it('keeps the xattrs, owner, mode, times and links of many files in one directory, copied a group at a time', async function () {
    // More files in one directory than the copier opens at once, hard links
    // among them (a name that is not the first is set aside mid-group), and
    // xattrs, owners and modes on some.
    const mnt = await fsImage(cleanups, 'xfs');
    const src = join(mnt, 'src');
    mkdirSync(join(src, 'many'), { recursive: true });
    for (let i = 0; i < 70; i++) {
      const path = join(src, 'many', `f${i}`);
      if (i % 9 === 4) {
        linkSync(join(src, 'many', `f${i - 1}`), path);
        continue;
      }
      writeFileSync(path, `file ${i}\n`.repeat(i));
      if (i % 7 === 0) setXattrSync(path, 'trusted.n', String(i));
      if (i % 5 === 0) lchownSync(path, 1000 + i, 2000 + i);
      if (i % 6 === 0) chmodSync(path, 0o4711);
      touch(path, 1600000000 + i, i);
    }
    linkSync(join(src, 'many', 'f1'), join(src, 'f1-outside'));
    const stats = await copyTree(src, join(mnt, 'dst'), { threads: 2 });
    expect(stats).to.include({ files: 62, hardlinks: 9, reflinked: 62 });
    expectSameTree(src, join(mnt, 'dst'));
  });

  it('reads and writes every byte with reflink: false, even where reflinks work (xfs)', async function () {
    const mnt = await fsImage(cleanups, 'xfs');
    const src = join(mnt, 'src');
    mkdirSync(src);
    const files = makeTree(src);
    const dst = join(mnt, 'dst');
    const stats = await copyTree(src, dst, { reflink: false });
    expectCounts(stats, files);
    expect(stats).to.include({ reflinked: 0, copyRanged: 0, copied: files });
    expectSameTree(src, dst);
    expectHolesKept(src, dst);
  });

  it('falls back to copying on ext4, keeping holes and everything else', async function () {
    const mnt = await fsImage(cleanups, 'ext4');
    const src = join(mnt, 'src');
    mkdirSync(src);
    const files = makeTree(src);
    const dst = join(mnt, 'dst');
    const stats = await copyTree(src, dst, { threads: 3 });
    expectCounts(stats, files);
    expect(stats.reflinked).to.equal(0);
    expect(stats.copyRanged + stats.copied).to.equal(files);
    expectSameTree(src, dst);
    expectHolesKept(src, dst);
  });

  it('copies between filesystems (tmpfs to ext4) with one thread', async function () {
    const src = await tmpfsDir(cleanups, '64m');
    const files = makeTree(src);
    const mnt = await fsImage(cleanups, 'ext4');
    const stats = await copyTree(src, join(mnt, 'dst'), { threads: 1 });
    expectCounts(stats, files);
    expect(stats.reflinked).to.equal(0);
    expectSameTree(src, join(mnt, 'dst'));
  });

  it('falls back for one file on another mount without giving up reflinks for the rest', async function () {
    const mnt = await fsImage(cleanups, 'btrfs');
    const src = join(mnt, 'src');
    mkdirSync(join(src, 'a/b'), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(join(src, i < 10 ? 'a' : 'a/b', `f${i}`), `file ${i}\n`.repeat(1000));
    // One file in the middle of the tree is a bind mount of a tmpfs file.
    const other = await tmpfsDir(cleanups, '4m');
    writeFileSync(join(other, 'foreign'), 'from another filesystem\n'.repeat(500));
    writeFileSync(join(src, 'a/f5-mounted'), '');
    await mount(join(src, 'a/f5-mounted'), { source: join(other, 'foreign'), flags: ['bind'] });
    cleanups.defer(() => unmount(join(src, 'a/f5-mounted'), ['detach']));

    const dst = join(mnt, 'dst');
    const stats = await copyTree(src, dst, { threads: 4 });
    expect(stats).to.include({ files: 21, reflinked: 20 });
    expect(stats.copyRanged + stats.copied).to.equal(1);
    expect(readFileSync(join(dst, 'a/f5-mounted'), 'utf8')).to.equal(readFileSync(join(other, 'foreign'), 'utf8'));
    expect(readFileSync(join(dst, 'a/b/f15'), 'utf8')).to.equal('file 15\n'.repeat(1000));
  });

  it('falls back for one file btrfs will not share (nodatacow) and reflinks the rest', async function () {
    const mnt = await fsImage(cleanups, 'btrfs');
    const src = join(mnt, 'src');
    mkdirSync(src);
    for (let i = 0; i < 10; i++) writeFileSync(join(src, `f${i}`), `file ${i}\n`.repeat(1000));
    // chattr +C only takes on an empty file; FICLONE then refuses it (EINVAL)
    // into a checksummed destination.
    writeFileSync(join(src, 'nocow'), '');
    execFileSync('chattr', ['+C', join(src, 'nocow')]);
    writeFileSync(join(src, 'nocow'), 'no checksums\n'.repeat(1000));
    const stats = await copyTree(src, join(mnt, 'dst'), { threads: 2 });
    expect(stats).to.include({ files: 11, reflinked: 10 });
    expect(stats.copyRanged + stats.copied).to.equal(1);
    expect(readFileSync(join(mnt, 'dst/nocow'), 'utf8')).to.equal('no checksums\n'.repeat(1000));
  });

  it('gives copies their exact modes under a default ACL, which stands in for the umask', async function () {
    const mnt = await fsImage(cleanups, 'xfs');
    const src = join(mnt, 'src');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'f'), 'x');
    chmodSync(join(src, 'f'), 0o644);
    writeFileSync(join(src, 'd/g'), 'y');
    chmodSync(join(src, 'd/g'), 0o755);
    // A default ACL of u::rwx g::--- o::---: entries made below get no group
    // or other bits, whatever the umask says.
    const parent = join(mnt, 'acl');
    mkdirSync(parent);
    const acl = Buffer.alloc(4 + 3 * 8);
    acl.writeUInt32LE(2, 0); // POSIX_ACL_XATTR_VERSION
    const entries: Array<[number, number]> = [[0x01, 7], [0x04, 0], [0x20, 0]]; // USER_OBJ, GROUP_OBJ, OTHER
    entries.forEach(([tag, perm], i) => {
      acl.writeUInt16LE(tag, 4 + i * 8);
      acl.writeUInt16LE(perm, 6 + i * 8);
      acl.writeUInt32LE(0xffffffff, 8 + i * 8);
    });
    setXattrSync(parent, 'system.posix_acl_default', acl);
    const dst = join(parent, 'dst');
    await copyTree(src, dst);
    expect(statSync(join(dst, 'f')).mode & 0o7777).to.equal(0o644);
    expect(statSync(join(dst, 'd/g')).mode & 0o7777).to.equal(0o755);
  });

  it('copies into an existing empty directory, and a tree holding its own destination', async function () {
    const src = scratchDir(cleanups);
    writeFileSync(join(src, 'f'), 'x');
    const dst = join(src, 'copy');
    mkdirSync(dst);
    // A setgid destination must not hand its group down to the copies.
    lchownSync(dst, 1234, 1234);
    chmodSync(dst, 0o2777);
    const stats = await copyTree(src, dst);
    expect(stats).to.include({ files: 1, dirs: 0 });
    expect(readdirSync(dst)).to.deep.equal(['f']);
    expect(statSync(join(dst, 'f'))).to.include({ uid: 0, gid: 0 });
    expect(statSync(dst)).to.include({ uid: 0, gid: 0, mode: statSync(src).mode });
    // An empty tree copies to an empty directory.
    const empty = scratchDir(cleanups);
    const stats2 = await copyTree(empty, join(empty, '..', `${empty.split('/').pop()!}-copy`));
    expect(stats2).to.deep.equal({
      files: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, bytes: 0, reflinked: 0, copyRanged: 0, copied: 0,
    });
    cleanups.defer(() => execFileSync('rm', ['-rf', `${empty}-copy`]));
  });

  it('rejects bad sources and destinations with Node-style errors', async function () {
    const dir = scratchDir(cleanups);
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'f'), 'x');
    const busy = join(dir, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'x'), '');
    let error = await rejection(copyTree(src, busy));
    expect(error).to.include({ code: 'ENOTEMPTY', syscall: 'copytree', path: busy });
    expect(error.stack).to.include('tree.test.ts');
    error = await rejection(copyTree(src, join(busy, 'x')));
    expect(error).to.include({ code: 'EEXIST', path: join(busy, 'x') });
    error = await rejection(copyTree(join(dir, 'missing'), join(dir, 'out')));
    expect(error).to.include({ code: 'ENOENT', path: join(dir, 'missing') });
    error = await rejection(copyTree(join(src, 'f'), join(dir, 'out')));
    expect(error).to.include({ code: 'ENOTDIR', syscall: 'copytree', path: join(src, 'f') });
    error = await rejection(copyTree(src, join(dir, 'no/such/dir')));
    expect(error).to.include({ code: 'ENOENT', syscall: 'mkdir' });
    error = await rejection(copyTree(src, src));
    expect(error.code).to.equal('ENOTEMPTY');
    const emptySrc = join(dir, 'empty');
    mkdirSync(emptySrc);
    error = await rejection(copyTree(emptySrc, emptySrc));
    expect(error).to.include({ code: 'EINVAL', syscall: 'copytree' });

    // A destination too small: the data copy fails and says where.
    writeFileSync(join(src, 'big'), Buffer.alloc(4 * MiB, 1));
    const small = await tmpfsDir(cleanups, '1m');
    error = await rejection(copyTree(src, join(small, 'dst')));
    expect(error.code).to.equal('ENOSPC');
    expect(error.path).to.be.a('string');
  });

  it('closes every fd it opens, on success and failure', async function () {
    const src = scratchDir(cleanups);
    makeTree(src);
    writeFileSync(join(src, 'big'), Buffer.alloc(2 * MiB, 1)); // more than the small tmpfs holds
    const before = openFdCount();
    const dst = scratchDir(cleanups);
    await copyTree(src, dst);
    await rejection(copyTree(src, dst));
    const small = await tmpfsDir(cleanups, '1m');
    await rejection(copyTree(src, join(small, 'dst')));
    expect(openFdCount()).to.equal(before);
  });

  describe('argument validation', function () {
    it('throws TypeErrors instead of crashing', function () {
      const dir = scratchDir(cleanups);
      const bad: Array<[string, () => unknown]> = [
        ['non-string src', () => native.copyTree(1 as unknown as string, dir, 0, true)],
        ['empty dst', () => native.copyTree(dir, '', 0, true)],
        ['NUL in dst', () => native.copyTree(dir, '/tmp/a\0b', 0, true)],
        ['negative threads', () => native.copyTree(dir, join(dir, 'x'), -1, true)],
        ['fractional threads', () => native.copyTree(dir, join(dir, 'x'), 1.5, true)],
        ['too many threads', () => native.copyTree(dir, join(dir, 'x'), 65, true)],
        ['missing threads', () => (native.copyTree as unknown as (a: string, b: string) => unknown)(dir, join(dir, 'x'))],
        ['missing reflink', () => (native.copyTree as unknown as (a: string, b: string, c: number) => unknown)(dir, join(dir, 'x'), 0)],
      ];
      for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
      expect(existsSync(join(dir, 'x'))).to.equal(false);
    });

    it('rejects bad options in the wrapper', async function () {
      const dir = scratchDir(cleanups);
      for (const threads of [0, 65, 2.5]) {
        await rejection(copyTree(dir, join(dir, 'x'), { threads })).then((e) => expect(e).to.be.instanceOf(RangeError));
      }
    });
  });
});
