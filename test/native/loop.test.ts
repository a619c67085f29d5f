import { expect } from 'chai';
import { execFile } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

import { native } from '../../lib/native/binding.js';
import { mknodSync } from '../../lib/native/fs.js';
import {
  attachLoop,
  detachLoop,
  listLoops,
  type LoopDevice,
  type LoopOptions,
  loopStatus,
} from '../../lib/native/loop.js';
import { Cleanups, fdsBelow, isRoot, rejection, scratchDir } from '../support/fixtures.js';
import { detachIfBacking, fsImage } from '../support/images.js';


const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

function sparseFile(cleanups: Cleanups, size = 64 * MiB, dir = scratchDir(cleanups, 'loop')): string {
  const file = join(dir, 'backing');
  writeFileSync(file, '');
  truncateSync(file, size);
  return file;
}

/** The device's size in bytes, from sysfs (512-byte sectors). */
function deviceSize(number: number): number {
  return Number(readFileSync(`/sys/block/loop${number}/size`, 'utf8')) * 512;
}

/** Open fds on loop devices or below `dir`: what a leak of the loop code would leave. */
function loopFds(dir: string): string[] {
  return [...fdsBelow(dir), ...fdsBelow('/dev').filter((target) => target.startsWith('/dev/loop'))];
}

describe('native loop devices', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  /** Attaches with the device released (handle closed, detached) on cleanup. */
  async function attach(file: string, options: LoopOptions = {}): Promise<LoopDevice> {
    const loop = await attachLoop(file, options);
    cleanups.defer(() => detachIfBacking(loop.device, file));
    cleanups.defer(() => loop.close());
    return loop;
  }

  it('attaches a file, reports its status and lists it, then detaches it', async function () {
    const file = sparseFile(cleanups);
    const loop = await attach(file);
    expect(loop.device).to.equal(`/dev/loop${loop.number}`);
    expect(await loopStatus(loop.device)).to.deep.equal({
      device: loop.device,
      number: loop.number,
      backingFile: file,
      offset: 0,
      sizeLimit: 0,
      readOnly: false,
      autoclear: false,
      partscan: false,
      directIo: false,
    });
    expect(deviceSize(loop.number)).to.equal(64 * MiB);
    const listed = (await listLoops()).find((entry) => entry.number === loop.number);
    expect(listed).to.deep.equal(await loopStatus(loop.number));

    // The device reads and writes the file.
    const fd = openSync(loop.device, 'r+');
    try {
      writeSync(fd, Buffer.from('through the loop'), 0, 16, 4096);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file).subarray(4096, 4096 + 16).toString()).to.equal('through the loop');

    await loop.close();
    await detachLoop(loop.device);
    const after = await loopStatus(loop.device).catch((e: unknown) => e);
    // Another process may take the freed device at once; it is no longer ours either way.
    if (after instanceof Error) {
      expect(after).to.include({ code: 'ENXIO', syscall: 'loop_get_status64', path: loop.device });
    } else expect((after as { backingFile: string }).backingFile).not.to.equal(file);
    expect((await listLoops()).map((entry) => entry.backingFile)).not.to.include(file);
  });

  it('attaches read-only, at an offset, with a size limit', async function () {
    const file = sparseFile(cleanups);
    const loop = await attach(file, { readOnly: true, offset: MiB, sizeLimit: 4 * MiB });
    expect(await loopStatus(loop.device)).to.include({ readOnly: true, offset: MiB, sizeLimit: 4 * MiB });
    expect(readFileSync(`/sys/block/loop${loop.number}/ro`, 'utf8').trim()).to.equal('1');
    expect(deviceSize(loop.number)).to.equal(4 * MiB);
    const fd = openSync(loop.device, 'r+');
    try {
      expect(() => writeSync(fd, Buffer.alloc(512), 0, 512, 0)).to.throw().with.property('code', 'EPERM');
    } finally {
      closeSync(fd);
    }
    const listed = (await listLoops()).find((entry) => entry.number === loop.number);
    expect(listed).to.include({ backingFile: file, readOnly: true, offset: MiB, sizeLimit: 4 * MiB });
  });

  it('detaches an autoclear device when its last holder closes it', async function () {
    const file = sparseFile(cleanups);
    const loop = await attach(file, { autoclear: true });
    expect(await loopStatus(loop.device)).to.include({ autoclear: true, backingFile: file });
    await loop.close();
    await loop.close(); // closing twice does nothing
    expect((await listLoops()).map((entry) => entry.backingFile)).not.to.include(file);
  });

  it('sets direct I/O and the logical block size', async function () {
    // On ext4: tmpfs (the VM's /tmp) takes O_DIRECT only since Linux 6.6.
    const file = sparseFile(cleanups, 16 * MiB, await fsImage(cleanups, 'ext4'));
    const loop = await attach(file, { directIo: true, blockSize: 4096 });
    expect(await loopStatus(loop.device)).to.include({ directIo: true });
    expect(readFileSync(`/sys/block/loop${loop.number}/queue/logical_block_size`, 'utf8').trim()).to.equal('4096');
  });

  it('attaches many devices at once without losing a race', async function () {
    const files = Array.from({ length: 4 }, () => sparseFile(cleanups, MiB));
    const loops = await Promise.all(files.map((file) => attach(file)));
    expect(new Set(loops.map((loop) => loop.device)).size).to.equal(files.length);
    for (const [i, loop] of loops.entries()) {
      expect((await loopStatus(loop.device)).backingFile).to.equal(files[i]);
    }
  });

  it('makes the /dev node when devtmpfs did not', async function () {
    // A child in its own mount namespace hides /dev under a tmpfs holding only
    // loop-control, attaches (autoclear: its exit releases the device) and reports.
    const lib = new URL('../../lib/native/', import.meta.url).href;
    const script = `
      import { readFileSync, statSync } from 'node:fs';
      import { mknodSync } from '${lib}fs.js';
      import { attachLoop, loopStatus } from '${lib}loop.js';
      import { mount } from '${lib}mount.js';
      const control = statSync('/dev/loop-control').rdev;
      await mount('/dev', { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m,mode=0755' });
      mknodSync('/dev/loop-control', 'char', 0o600, (control >> 8) & 0xfff, control & 0xff);
      const loop = await attachLoop(process.env.BACKING, { autoclear: true });
      const node = statSync(loop.device);
      console.log(JSON.stringify({
        device: loop.device,
        isBlockDevice: node.isBlockDevice(),
        deviceNumber: [(node.rdev >> 8) & 0xfff, node.rdev & 0xff].join(':'),
        sysfsNumber: readFileSync('/sys/block/loop' + loop.number + '/dev', 'utf8').trim(),
        backingFile: (await loopStatus(loop.device)).backingFile,
      }));
      await loop.close();
    `;
    const file = sparseFile(cleanups, MiB);
    const child = [process.execPath, '--import', 'tsx', '--input-type=module', '-e', script];
    const { stdout } = await execFileAsync('unshare', ['--mount', '--propagation', 'private', '--', ...child], {
      env: { ...process.env, BACKING: file },
    });
    const report = JSON.parse(stdout) as Record<string, unknown>;
    cleanups.defer(() => detachIfBacking(String(report.device), file));
    expect(report).to.include({ isBlockDevice: true, backingFile: file });
    expect(report.deviceNumber).to.equal(report.sysfsNumber);
  });

  it('lists attached devices by number, each with its backing file', async function () {
    const loop = await attach(sparseFile(cleanups));
    const list = await listLoops();
    const numbers = list.map((entry) => entry.number);
    expect(numbers).to.deep.equal([...numbers].sort((a, b) => a - b));
    expect(numbers).to.include(loop.number);
    for (const entry of list) {
      expect(entry.device).to.equal(`/dev/loop${entry.number}`);
      expect(entry.backingFile).to.be.a('string').and.not.equal('');
    }
  });

  it('rejects a missing or unusable backing file with a Node-style error', async function () {
    const dir = scratchDir(cleanups);
    const missing = join(dir, 'missing');
    const error = await rejection(attachLoop(missing));
    expect(error).to.include({ code: 'ENOENT', errno: -2, syscall: 'open', path: missing });
    expect(error.message).to.equal(`ENOENT: No such file or directory, open '${missing}'`);
    expect(error.stack).to.include('loop.test.ts');
    mkdirSync(join(dir, 'sub'));
    expect(await rejection(attachLoop(join(dir, 'sub')))).to.include({ code: 'EISDIR' });
    const fifo = join(dir, 'fifo');
    mknodSync(fifo, 'fifo', 0o600);
    expect(await rejection(attachLoop(fifo))).to.include({ code: 'EINVAL', path: fifo });
    const file = sparseFile(cleanups, MiB);
    expect(await rejection(attachLoop(file, { blockSize: 1000 }))).to.include({
      code: 'EINVAL',
      syscall: 'loop_configure',
      path: file,
    });
    expect((await listLoops()).map((entry) => entry.backingFile)).not.to.include(file);
  });

  it('rejects detach and status on what is not a loop device', async function () {
    expect(await rejection(detachLoop('/dev/null'))).to.include({
      code: 'ENOTTY',
      syscall: 'loop_clr_fd',
      path: '/dev/null',
    });
    expect(await rejection(loopStatus('/dev/null'))).to.include({ code: 'ENOTTY', syscall: 'loop_get_status64' });
    const missing = join(scratchDir(cleanups), 'loop99');
    expect(await rejection(detachLoop(missing))).to.include({ code: 'ENOENT', syscall: 'open', path: missing });
  });

  it('closes every fd it opens, on success and failure', async function () {
    const file = sparseFile(cleanups, MiB);
    const missing = join(scratchDir(cleanups), 'missing');
    const before = loopFds(dirname(file));
    for (let i = 0; i < 5; i++) {
      const loop = await attach(file, { autoclear: true });
      await loopStatus(loop.device);
      await listLoops();
      await loop.close();
      await attachLoop(missing).catch(() => {});
      await attachLoop(file, { blockSize: 1000 }).catch(() => {});
      await loopStatus('/dev/null').catch(() => {});
      await detachLoop('/dev/null').catch(() => {});
    }
    expect(loopFds(dirname(file))).to.deep.equal(before);
  });

  it('throws TypeErrors on bad arguments instead of crashing', function () {
    const bad: Array<[string, () => unknown]> = [
      ['attach: non-string file', () => native.loopAttach(1 as unknown as string, {})],
      ['attach: empty file', () => native.loopAttach('', {})],
      ['attach: missing options', () => (native.loopAttach as unknown as (f: string) => unknown)('/tmp/f')],
      ['attach: string readOnly', () => native.loopAttach('/tmp/f', { readOnly: 'yes' as unknown as boolean })],
      ['attach: negative offset', () => native.loopAttach('/tmp/f', { offset: -1 })],
      ['attach: fractional sizeLimit', () => native.loopAttach('/tmp/f', { sizeLimit: 1.5 })],
      ['attach: huge blockSize', () => native.loopAttach('/tmp/f', { blockSize: 1 << 20 })],
      ['attach: string offset', () => native.loopAttach('/tmp/f', { offset: '4096' as unknown as number })],
      ['detach: empty device', () => native.loopDetach('')],
      ['status: null device', () => native.loopStatus(null as unknown as string)],
    ];
    for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
  });
});
