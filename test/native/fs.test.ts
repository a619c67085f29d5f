import { expect } from 'chai';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { native } from '../../lib/native/binding.js';
import {
  getXattrSync,
  listXattrsSync,
  mknodSync,
  removeXattrSync,
  setXattrSync,
  statfs,
  statfsSync,
  supportsDType,
  whiteoutSync,
} from '../../lib/native/fs.js';
import { mount, unmount } from '../../lib/native/mount.js';
import { Cleanups, fdsBelow, isRoot, rejection, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { fsImage } from '../support/images.js';


/** What an expression throws (synchronously), for property checks. */
function thrown(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
  return expect.fail('expected an error') as never;
}


// vfs_cap_data revision 2: magic_etc with the effective flag, then
// permitted/inheritable for capability words 0 and 1. Permits
// CAP_NET_BIND_SERVICE (10), as `setcap cap_net_bind_service+ep` writes.
function fileCapability(): Buffer {
  const value = Buffer.alloc(20);
  value.writeUInt32LE(0x02000000 | 0x1, 0);
  value.writeUInt32LE(1 << 10, 4);
  return value;
}

describe('native fs primitives', function () {
  const cleanups = new Cleanups();
  const images = new Cleanups();
  let btrfs = '';
  let xfs = '';
  let ext4 = '';

  before(async function () {
    if (!isRoot) this.skip();
    btrfs = await fsImage(images, 'btrfs');
    xfs = await fsImage(images, 'xfs');
    ext4 = await fsImage(images, 'ext4');
  });
  after(() => images.release());
  afterEach(() => cleanups.release());

  /**
   * A fresh directory on the xfs image: tmpfs (the VM's /tmp) has user.* xattrs
   * only since Linux 6.6, and this small ext4's 1 KiB blocks hold no 3000-byte value.
   */
  function userXattrDir(): string {
    const dir = mkdtempSync(join(xfs, 'xattrs-'));
    cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  describe('xattrs', function () {
    it('round-trips binary values, lists and removes them', function () {
      const file = join(userXattrDir(), 'f');
      writeFileSync(file, '');
      const binary = Buffer.from([0, 1, 2, 255, 0, 7]);
      setXattrSync(file, 'user.binary', binary);
      setXattrSync(file, 'user.text', 'hello');
      setXattrSync(file, 'user.empty', Buffer.alloc(0));
      expect(getXattrSync(file, 'user.binary')).to.deep.equal(binary);
      expect(getXattrSync(file, 'user.text').toString()).to.equal('hello');
      expect(getXattrSync(file, 'user.empty')).to.have.length(0);
      expect(listXattrsSync(file).sort()).to.deep.equal(['user.binary', 'user.empty', 'user.text']);
      removeXattrSync(file, 'user.binary');
      expect(listXattrsSync(file).sort()).to.deep.equal(['user.empty', 'user.text']);
    });

    it('round-trips a value of several KiB', function () {
      const file = join(userXattrDir(), 'f');
      writeFileSync(file, '');
      const value = Buffer.alloc(3000, 'v');
      setXattrSync(file, 'user.big', value);
      expect(getXattrSync(file, 'user.big')).to.deep.equal(value);
    });

    it('round-trips trusted.overlay.opaque and security.capability', function () {
      const dir = scratchDir(cleanups);
      const file = join(dir, 'binary');
      writeFileSync(file, '');
      setXattrSync(dir, 'trusted.overlay.opaque', 'y');
      expect(getXattrSync(dir, 'trusted.overlay.opaque').toString()).to.equal('y');
      expect(listXattrsSync(dir)).to.include('trusted.overlay.opaque');
      setXattrSync(file, 'security.capability', fileCapability());
      expect(getXattrSync(file, 'security.capability')).to.deep.equal(fileCapability());
    });

    it('honours create and replace', function () {
      const file = join(userXattrDir(), 'f');
      writeFileSync(file, '');
      expect(thrown(() => setXattrSync(file, 'user.a', 'x', 'replace'))).to.include({
        code: 'ENODATA',
        syscall: 'lsetxattr',
        path: file,
      });
      setXattrSync(file, 'user.a', 'x', 'create');
      expect(thrown(() => setXattrSync(file, 'user.a', 'y', 'create'))).to.include({ code: 'EEXIST' });
      setXattrSync(file, 'user.a', 'z', 'replace');
      expect(getXattrSync(file, 'user.a').toString()).to.equal('z');
    });

    it('acts on a symlink itself, never its target', function () {
      const dir = scratchDir(cleanups);
      const target = join(dir, 'target');
      const link = join(dir, 'link');
      writeFileSync(target, '');
      symlinkSync('target', link);
      setXattrSync(link, 'trusted.where', 'link');
      expect(getXattrSync(link, 'trusted.where').toString()).to.equal('link');
      expect(listXattrsSync(target)).to.deep.equal([]);
      expect(thrown(() => getXattrSync(target, 'trusted.where'))).to.include({ code: 'ENODATA' });
      // The kernel refuses user.* attributes on symlinks.
      expect(thrown(() => setXattrSync(link, 'user.a', 'x'))).to.include({ code: 'EPERM' });
      removeXattrSync(link, 'trusted.where');
      expect(listXattrsSync(link)).to.deep.equal([]);
    });

    it('reports Node-style errors', function () {
      const dir = userXattrDir();
      const file = join(dir, 'f');
      const missing = join(dir, 'missing');
      writeFileSync(file, '');
      const error = thrown(() => getXattrSync(file, 'user.none'));
      expect(error).to.be.instanceOf(Error);
      expect(error).to.include({ code: 'ENODATA', errno: -61, syscall: 'lgetxattr', path: file });
      expect(error.message).to.equal(`ENODATA: No data available, lgetxattr '${file}'`);
      expect(thrown(() => removeXattrSync(file, 'user.none'))).to.include({ code: 'ENODATA', syscall: 'lremovexattr' });
      expect(thrown(() => listXattrsSync(missing))).to.include({
        code: 'ENOENT',
        syscall: 'llistxattr',
        path: missing,
      });
      expect(thrown(() => setXattrSync(missing, 'user.a', 'x'))).to.include({ code: 'ENOENT' });
      expect(thrown(() => setXattrSync(file, 'nonamespace', 'x'))).to.include({ code: 'EOPNOTSUPP' });
      expect(thrown(() => setXattrSync(file, 'user.huge', Buffer.alloc(70000)))).to.include({ code: 'E2BIG' });
    });
  });

  describe('mknod and whiteouts', function () {
    it('makes an overlay whiteout: a character device 0/0 with mode 0', function () {
      const path = join(scratchDir(cleanups), 'gone');
      whiteoutSync(path);
      const st = lstatSync(path);
      expect(st.isCharacterDevice()).to.equal(true);
      expect(st.rdev).to.equal(0);
      expect(st.mode & 0o7777).to.equal(0);
      expect(thrown(() => whiteoutSync(path))).to.include({ code: 'EEXIST', syscall: 'mknod', path });
    });

    it('makes every node type', function () {
      const dir = scratchDir(cleanups);
      mknodSync(join(dir, 'file'), 'file', 0o640);
      mknodSync(join(dir, 'fifo'), 'fifo', 0o600);
      mknodSync(join(dir, 'socket'), 'socket', 0o600);
      mknodSync(join(dir, 'null'), 'char', 0o666 & ~process.umask(), 1, 3);
      mknodSync(join(dir, 'loop'), 'block', 0o600, 7, 0);
      expect(lstatSync(join(dir, 'file')).isFile()).to.equal(true);
      expect(lstatSync(join(dir, 'file')).mode & 0o7777).to.equal(0o640 & ~process.umask());
      expect(lstatSync(join(dir, 'fifo')).isFIFO()).to.equal(true);
      expect(lstatSync(join(dir, 'socket')).isSocket()).to.equal(true);
      const nullDev = lstatSync(join(dir, 'null'));
      expect(nullDev.isCharacterDevice()).to.equal(true);
      expect(nullDev.rdev).to.equal(lstatSync('/dev/null').rdev);
      const loopDev = lstatSync(join(dir, 'loop'));
      expect(loopDev.isBlockDevice()).to.equal(true);
      expect(loopDev.rdev).to.equal((7 << 8) | 0);
      writeFileSync(join(dir, 'null'), 'discarded');
      expect(readFileSync(join(dir, 'null'))).to.have.length(0);
    });

    it('reports a missing parent', function () {
      const path = join(scratchDir(cleanups), 'no', 'fifo');
      expect(thrown(() => mknodSync(path, 'fifo', 0o600))).to.include({ code: 'ENOENT', syscall: 'mknod', path });
    });
  });

  describe('statfs', function () {
    it('names tmpfs and reports its size and mount flags', async function () {
      const dir = scratchDir(cleanups, 'statfs');
      await mount(dir, { source: 'tmpfs', fstype: 'tmpfs', flags: ['nosuid', 'nodev'], data: 'size=1m' });
      cleanups.defer(() => unmount(dir));
      const st = await statfs(dir);
      expect(st).to.include({ type: 0x01021994, typeName: 'tmpfs', blockSize: 4096, blocks: 256, nameMax: 255 });
      expect(st.blocksFree).to.be.within(250, 256);
      expect(st.flags).to.include.members(['nosuid', 'nodev']);
      expect(st.flags).not.to.include('rdonly');
      expect(statfsSync(dir)).to.deep.equal(st);
    });

    it('names the root filesystem as the mount table does', async function () {
      const rootType = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((line) => line.split(' '))
        .filter((fields) => fields[1] === '/')
        .map((fields) => fields[2])
        .pop();
      const expected = rootType === 'ext2' || rootType === 'ext3' ? 'ext4' : rootType;
      expect((await statfs('/')).typeName).to.equal(expected);
    });

    it('names ext4, btrfs and xfs images, proc and sysfs', async function () {
      expect(await statfs(ext4)).to.include({ type: 0xef53, typeName: 'ext4' });
      expect(await statfs(btrfs)).to.include({ type: 0x9123683e, typeName: 'btrfs' });
      expect(await statfs(xfs)).to.include({ type: 0x58465342, typeName: 'xfs' });
      expect(statfsSync('/proc').typeName).to.equal('proc');
      expect(statfsSync('/sys').typeName).to.equal('sysfs');
      const st = await statfs(xfs);
      expect(st.blockSize).to.equal(4096);
      expect(st.blocks * st.blockSize).to.be.within(250 * 1024 * 1024, 320 * 1024 * 1024);
      expect(st.blocksAvailable).to.be.at.most(st.blocksFree);
      expect(st.filesFree).to.be.at.most(st.files);
    });

    it('rejects with a Node-style error', async function () {
      const missing = join(scratchDir(cleanups), 'missing');
      const error = await rejection(statfs(missing));
      expect(error).to.include({ code: 'ENOENT', syscall: 'statfs', path: missing });
      expect(error.stack).to.include('fs.test.ts');
      expect(thrown(() => statfsSync(missing))).to.include({ code: 'ENOENT', syscall: 'statfs' });
    });
  });

  describe('supportsDType', function () {
    it('is true on tmpfs, xfs, btrfs and ext4, and leaves nothing behind', async function () {
      const tmpfs = await tmpfsDir(cleanups, '4m');
      for (const dir of [tmpfs, xfs, btrfs, ext4]) {
        const before = readdirSync(dir);
        expect(await supportsDType(dir), dir).to.equal(true);
        expect(readdirSync(dir), dir).to.deep.equal(before);
      }
    });

    it('is false on an ext4 made without the filetype feature', async function () {
      const noDType = await fsImage(cleanups, 'ext4', { mkfsArgs: ['-O', '^filetype'] });
      expect(await supportsDType(noDType)).to.equal(false);
      expect(readdirSync(noDType)).to.deep.equal(['lost+found']);
    });

    it('rejects when it cannot make its probe directory', async function () {
      const file = join(scratchDir(cleanups), 'file');
      writeFileSync(file, '');
      const error = await rejection(supportsDType(file));
      expect(error).to.include({ code: 'ENOTDIR', syscall: 'mkdtemp', path: file });
      const dir = scratchDir(cleanups);
      const readOnly = join(dir, 'ro');
      mkdirSync(readOnly);
      await mount(readOnly, { source: 'tmpfs', fstype: 'tmpfs', flags: ['rdonly'], data: 'size=1m' });
      cleanups.defer(() => unmount(readOnly));
      expect(await rejection(supportsDType(readOnly))).to.include({ code: 'EROFS' });
    });
  });

  it('closes every fd it opens, on success and failure', async function () {
    const dir = userXattrDir();
    const file = join(dir, 'f');
    writeFileSync(file, '');
    for (let i = 0; i < 20; i++) {
      setXattrSync(file, 'user.a', 'x');
      getXattrSync(file, 'user.a');
      listXattrsSync(file);
      thrown(() => getXattrSync(file, 'user.none'));
      statfsSync(dir);
      await statfs(join(dir, 'missing')).catch(() => {});
      expect(await supportsDType(dir)).to.equal(true);
      await supportsDType(file).catch(() => {});
    }
    expect(fdsBelow(dir)).to.deep.equal([]);
  });

  it('throws TypeErrors on bad arguments instead of crashing', function () {
    const bad: Array<[string, () => unknown]> = [
      ['getxattr: non-string path', () => native.lgetxattrSync(1 as unknown as string, 'user.a')],
      ['getxattr: empty name', () => native.lgetxattrSync('/tmp', '')],
      ['getxattr: NUL in name', () => native.lgetxattrSync('/tmp', 'user.a\0b')],
      ['setxattr: string value', () => native.lsetxattrSync('/tmp', 'user.a', 'x' as unknown as Buffer, 0)],
      ['setxattr: unknown flags', () => native.lsetxattrSync('/tmp', 'user.a', Buffer.alloc(1), 3)],
      ['setxattr: unknown flag name', () => setXattrSync('/tmp', 'user.a', 'x', 'upsert' as 'create')],
      ['listxattr: missing path', () => (native.llistxattrSync as unknown as () => unknown)()],
      ['removexattr: NUL in path', () => native.lremovexattrSync('/tmp/\0', 'user.a')],
      ['mknod: unknown type', () => native.mknodSync('/tmp/x', 'door', 0o600, 0, 0)],
      ['mknod: mode out of range', () => native.mknodSync('/tmp/x', 'file', 0o10000, 0, 0)],
      ['mknod: device number on a fifo', () => native.mknodSync('/tmp/x', 'fifo', 0o600, 1, 3)],
      ['mknod: major out of range', () => native.mknodSync('/tmp/x', 'char', 0o600, 4096, 0)],
      ['mknod: negative minor', () => native.mknodSync('/tmp/x', 'char', 0o600, 1, -1)],
      ['whiteout: empty path', () => native.whiteoutSync('')],
      ['statfs: object path', () => native.statfs({} as unknown as string)],
      ['statfsSync: empty path', () => native.statfsSync('')],
      ['supportsDType: missing path', () => (native.supportsDType as unknown as () => unknown)()],
    ];
    for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
  });
});
