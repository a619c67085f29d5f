import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { native } from '../../lib/native/binding.js';
import { cloneFile, cloneRange, probeReflink } from '../../lib/native/clone.js';
import { mknodSync, statfs } from '../../lib/native/fs.js';
import { Cleanups, isRoot, rejection, tmpfsDir } from '../support/fixtures.js';
import { fsImage } from '../support/images.js';


const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

/** Writes `size` bytes of random data and fsyncs them, so their blocks are allocated. */
async function writeRandomFile(path: string, size: number): Promise<void> {
  const file = await open(path, 'wx');
  try {
    for (let done = 0; done < size; done += MiB) await file.write(randomBytes(Math.min(MiB, size - done)));
    await file.sync();
  } finally {
    await file.close();
  }
}

async function fsyncFile(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function usedBytes(dir: string): Promise<number> {
  const st = await statfs(dir);
  return (st.blocks - st.blocksFree) * st.blockSize;
}

/** Whether FIEMAP (through filefrag) marks every extent of `path` as shared. */
async function allExtentsShared(path: string): Promise<boolean> {
  const { stdout } = await execFileAsync('filefrag', ['-v', path]);
  const extents = stdout.split('\n').filter((line) => /^\s*\d+:/.test(line));
  return extents.length > 0 && extents.every((line) => line.includes('shared'));
}

/** A 32 MiB file with 4 KiB of data at 0 and at 16 MiB, the rest holes. */
function writeSparseFile(path: string): void {
  writeFileSync(path, Buffer.alloc(4096, 'a'));
  truncateSync(path, 32 * MiB);
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.alloc(4096, 'b'), 0, 4096, 16 * MiB);
  } finally {
    closeSync(fd);
  }
}

function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('native clone: FICLONE, copy_file_range, read/write', function () {
  const cleanups = new Cleanups();
  const images = new Cleanups();
  let btrfs = '';
  let xfs = '';
  let ext4 = '';
  let tmpfs = '';

  before(async function () {
    if (!isRoot) this.skip();
    btrfs = await fsImage(images, 'btrfs');
    xfs = await fsImage(images, 'xfs');
    ext4 = await fsImage(images, 'ext4', { size: 128 * MiB });
    tmpfs = await tmpfsDir(images, '128m');
  });
  after(() => images.release());
  afterEach(() => cleanups.release());

  let fileCount = 0;
  /** A fresh path on `dir`, removed after the test. */
  function fresh(dir: string, name = 'f'): string {
    const path = join(dir, `${name}-${++fileCount}`);
    cleanups.defer(() => rmSync(path, { force: true }));
    return path;
  }

  for (const fstype of ['btrfs', 'xfs'] as const) {
    it(`reflinks a 64 MiB file on ${fstype}, sharing its extents`, async function () {
      const dir = fstype === 'btrfs' ? btrfs : xfs;
      const src = fresh(dir, 'src');
      const dst = fresh(dir, 'dst');
      await writeRandomFile(src, 64 * MiB);
      const before = await usedBytes(dir);
      expect(await cloneFile(src, dst)).to.deep.equal({ method: 'ficlone', bytes: 64 * MiB });
      await fsyncFile(dst);
      const grew = (await usedBytes(dir)) - before;
      expect(grew, 'bytes used by the clone').to.be.below(4 * MiB);
      expect(await allExtentsShared(dst)).to.equal(true);
      expect(await sha256(dst)).to.equal(await sha256(src));

      // The measurement would see a real copy.
      const copy = fresh(dir, 'copy');
      expect(await cloneFile(src, copy, { method: 'copy' })).to.deep.equal({ method: 'copy', bytes: 64 * MiB });
      await fsyncFile(copy);
      expect((await usedBytes(dir)) - before - grew, 'bytes used by the copy').to.be.above(60 * MiB);
      expect(await allExtentsShared(copy)).to.equal(false);
    });
  }

  it("'reflink' mode reflinks on btrfs and xfs", async function () {
    for (const dir of [btrfs, xfs]) {
      const src = fresh(dir);
      writeFileSync(src, 'data');
      expect(await cloneFile(src, fresh(dir), { method: 'reflink' })).to.deep.equal({ method: 'ficlone', bytes: 4 });
    }
  });

  it('falls back to copy_file_range on ext4 and tmpfs, and to read/write across filesystems', async function () {
    for (const dir of [ext4, tmpfs]) {
      const src = fresh(dir);
      await writeRandomFile(src, 3 * MiB + 17);
      const dst = fresh(dir);
      expect(await cloneFile(src, dst), dir).to.deep.equal({ method: 'copy_file_range', bytes: 3 * MiB + 17 });
      expect(await sha256(dst)).to.equal(await sha256(src));
    }
    const src = fresh(tmpfs);
    await writeRandomFile(src, 2 * MiB + 1);
    const dst = fresh(ext4);
    expect(await cloneFile(src, dst)).to.deep.equal({ method: 'copy', bytes: 2 * MiB + 1 });
    expect(await sha256(dst)).to.equal(await sha256(src));
  });

  it("'reflink' mode fails where FICLONE cannot work, leaving no destination", async function () {
    const src = fresh(tmpfs);
    writeFileSync(src, 'data');
    const dst = fresh(tmpfs);
    const error = await rejection(cloneFile(src, dst, { method: 'reflink' }));
    expect(error).to.include({ code: 'EOPNOTSUPP', syscall: 'ficlone', path: src, dest: dst });
    expect(error.stack).to.include('clone.test.ts');
    expect(existsSync(dst)).to.equal(false);

    const btrfsSrc = fresh(btrfs);
    writeFileSync(btrfsSrc, 'data');
    const xfsDst = fresh(xfs);
    const crossError = await rejection(cloneFile(btrfsSrc, xfsDst, { method: 'reflink' }));
    expect(crossError).to.include({ code: 'EXDEV', syscall: 'ficlone' });
    expect(existsSync(xfsDst)).to.equal(false);
  });

  it('keeps holes when it copies', async function () {
    for (const [dir, method] of [[ext4, 'auto'], [tmpfs, 'auto'], [ext4, 'copy'], [btrfs, 'copy']] as const) {
      const src = fresh(dir);
      writeSparseFile(src);
      const dst = fresh(dir);
      const result = await cloneFile(src, dst, { method });
      expect(result.method, `${dir} ${method}`).to.equal(method === 'auto' ? 'copy_file_range' : 'copy');
      expect(result.bytes).to.equal(32 * MiB);
      await fsyncFile(dst);
      const st = statSync(dst);
      expect(st.size).to.equal(32 * MiB);
      expect(st.blocks * 512, `${dir} ${method} allocated bytes`).to.be.at.most(64 * 1024);
      expect(await sha256(dst)).to.equal(await sha256(src));
    }
    // A file that ends in a hole, copied across filesystems (read/write).
    const src = fresh(tmpfs);
    writeSparseFile(src);
    const dst = fresh(ext4);
    expect(await cloneFile(src, dst)).to.deep.equal({ method: 'copy', bytes: 32 * MiB });
    expect(statSync(dst).blocks * 512).to.be.at.most(64 * 1024);
    expect(await sha256(dst)).to.equal(await sha256(src));
  });

  it("gives the copy the source's permission bits, whatever the umask", async function () {
    for (const method of ['auto', 'copy'] as const) {
      const src = fresh(btrfs);
      writeFileSync(src, 'x');
      chmodSync(src, 0o4751);
      const dst = fresh(btrfs);
      await cloneFile(src, dst, { method });
      expect(statSync(dst).mode & 0o7777).to.equal(0o4751);
    }
    const src = fresh(tmpfs);
    writeFileSync(src, 'x');
    chmodSync(src, 0o666);
    const dst = fresh(tmpfs);
    await cloneFile(src, dst);
    expect(statSync(dst).mode & 0o7777).to.equal(0o666);
  });

  it('refuses an existing destination, a missing source, a directory and a FIFO', async function () {
    const src = fresh(ext4);
    writeFileSync(src, 'new');
    const dst = fresh(ext4);
    writeFileSync(dst, 'old');
    expect(await rejection(cloneFile(src, dst))).to.include({ code: 'EEXIST', syscall: 'open', path: dst });
    expect(readFileSync(dst, 'utf8')).to.equal('old');
    const missing = fresh(ext4);
    expect(await rejection(cloneFile(missing, fresh(ext4)))).to.include({
      code: 'ENOENT',
      syscall: 'open',
      path: missing,
    });
    const target = fresh(ext4);
    expect(await rejection(cloneFile(ext4, target))).to.include({ code: 'EISDIR', path: ext4 });
    expect(existsSync(target)).to.equal(false);
    // A FIFO would block an open for reading until a writer came.
    const fifo = fresh(ext4);
    mknodSync(fifo, 'fifo', 0o600);
    expect(await rejection(cloneFile(fifo, target))).to.include({ code: 'EINVAL', syscall: 'copyfile', path: fifo });
    expect(await rejection(cloneRange(fifo, 0, src, 0, 0))).to.include({ code: 'EINVAL', syscall: 'ficlonerange' });
    expect(existsSync(target)).to.equal(false);
  });

  describe('cloneRange', function () {
    const block = (fill: string): Buffer => Buffer.alloc(4096, fill);

    it('shares block-aligned ranges from a path or an fd', async function () {
      const src = fresh(btrfs);
      writeFileSync(src, Buffer.concat([block('a'), block('b'), block('c')]));
      const dst = fresh(btrfs);
      writeFileSync(dst, Buffer.concat([block('z'), block('z')]));
      await cloneRange(src, 4096, dst, 4096, 4096);
      expect(readFileSync(dst)).to.deep.equal(Buffer.concat([block('z'), block('b')]));
      const file = await open(src, 'r');
      try {
        await cloneRange(file.fd, 0, dst, 8192, 4096);
      } finally {
        await file.close();
      }
      expect(readFileSync(dst)).to.deep.equal(Buffer.concat([block('z'), block('b'), block('a')]));
      // Length 0: to the end of the source.
      const whole = fresh(xfs);
      writeFileSync(whole, '');
      const xfsSrc = fresh(xfs);
      writeFileSync(xfsSrc, Buffer.concat([block('x'), block('y')]));
      await cloneRange(xfsSrc, 0, whole, 0, 0);
      expect(readFileSync(whole)).to.deep.equal(readFileSync(xfsSrc));
      expect(await allExtentsShared(whole)).to.equal(true);
    });

    it('rejects unaligned ranges, unsupported filesystems and missing files', async function () {
      const src = fresh(btrfs);
      writeFileSync(src, Buffer.concat([block('a'), block('b')]));
      const dst = fresh(btrfs);
      writeFileSync(dst, block('z'));
      expect(await rejection(cloneRange(src, 100, dst, 0, 4096))).to.include({
        code: 'EINVAL',
        syscall: 'ficlonerange',
        path: src,
        dest: dst,
      });
      const tmpSrc = fresh(tmpfs);
      writeFileSync(tmpSrc, block('a'));
      const tmpDst = fresh(tmpfs);
      writeFileSync(tmpDst, '');
      expect(await rejection(cloneRange(tmpSrc, 0, tmpDst, 0, 0))).to.include({ code: 'EOPNOTSUPP' });
      const missing = fresh(btrfs);
      expect(await rejection(cloneRange(src, 0, missing, 0, 0))).to.include({
        code: 'ENOENT',
        syscall: 'open',
        path: missing,
      });
      expect(existsSync(missing)).to.equal(false);
      expect(await rejection(cloneRange(missing, 0, dst, 0, 0))).to.include({ code: 'ENOENT', path: missing });
      expect(await rejection(cloneRange(987654, 0, dst, 0, 0))).to.include({
        code: 'EBADF',
        path: 'fd 987654',
      });
    });
  });

  describe('probeReflink', function () {
    it('is true on btrfs and xfs, false on ext4 and tmpfs, and leaves nothing behind', async function () {
      for (const [dir, expected] of [[btrfs, true], [xfs, true], [ext4, false], [tmpfs, false]] as const) {
        const before = readdirSync(dir);
        expect(await probeReflink(dir), dir).to.equal(expected);
        expect(readdirSync(dir), dir).to.deep.equal(before);
      }
    });

    it('rejects a directory it cannot write to', async function () {
      const missing = join(tmpfs, 'missing');
      expect(await rejection(probeReflink(missing))).to.include({ code: 'ENOENT', syscall: 'mkostemp', path: missing });
    });
  });

  it('closes every fd it opens, on success and failure', async function () {
    const src = fresh(btrfs);
    writeFileSync(src, Buffer.alloc(4096, 'q'));
    const before = openFdCount();
    for (let i = 0; i < 10; i++) {
      await cloneFile(src, fresh(btrfs));
      await cloneFile(src, fresh(btrfs), { method: 'copy' });
      await cloneFile(src, fresh(tmpfs));
      await cloneFile(src, fresh(tmpfs), { method: 'reflink' }).catch(() => {});
      await cloneFile(src, src).catch(() => {});
      await cloneFile(fresh(btrfs), fresh(btrfs)).catch(() => {});
      const dst = fresh(btrfs);
      writeFileSync(dst, '');
      await cloneRange(src, 0, dst, 0, 0);
      await cloneRange(src, 1, dst, 0, 0).catch(() => {});
      await probeReflink(btrfs);
      await probeReflink(tmpfs);
      await probeReflink(join(btrfs, 'missing')).catch(() => {});
    }
    expect(openFdCount()).to.equal(before);
  });

  it('throws TypeErrors on bad arguments instead of crashing', function () {
    const bad: Array<[string, () => unknown]> = [
      ['cloneFile: non-string src', () => native.cloneFile(1 as unknown as string, '/tmp/b', 'auto')],
      ['cloneFile: empty dst', () => native.cloneFile('/tmp/a', '', 'auto')],
      ['cloneFile: unknown mode', () => native.cloneFile('/tmp/a', '/tmp/b', 'hardlink')],
      ['cloneFile: missing mode', () => (native.cloneFile as (a: string, b: string) => unknown)('/tmp/a', '/tmp/b')],
      ['cloneRange: negative fd', () => native.cloneRange(-1, 0, '/tmp/b', 0, 0)],
      ['cloneRange: fractional offset', () => native.cloneRange('/tmp/a', 0.5, '/tmp/b', 0, 0)],
      ['cloneRange: negative length', () => native.cloneRange('/tmp/a', 0, '/tmp/b', 0, -4096)],
      ['cloneRange: unsafe offset', () => native.cloneRange('/tmp/a', 0, '/tmp/b', 2 ** 60, 0)],
      ['cloneRange: object src', () => native.cloneRange({} as unknown as string, 0, '/tmp/b', 0, 0)],
      ['cloneRange: NUL in dst', () => native.cloneRange('/tmp/a', 0, '/tmp/\0', 0, 0)],
      ['probeReflink: number', () => native.probeReflink(3 as unknown as string)],
    ];
    for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
  });
});
