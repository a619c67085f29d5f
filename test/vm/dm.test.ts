// Device-mapper through lib/native/dm.ts, on the UML guest's kernel (the
// host has no device-mapper): npm run test:vm. Inside the guest these tests
// never skip; a missing dm driver there is a failure.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { BLOCK_SECTORS, SECTOR } from '../../lib/drivers/dm/pool.js';
import { native } from '../../lib/native/binding.js';
import {
  createDevice,
  deviceStatus,
  deviceTable,
  dmVersion,
  listDevices,
  loadTable,
  removeDevice,
  resumeDevice,
  suspendDevice,
  targetMessage,
  targetStatus,
} from '../../lib/native/dm.js';
import { listLoops } from '../../lib/native/loop.js';
import { mount, unmount } from '../../lib/native/mount.js';
import { Cleanups, isRoot, rejection, requireFeature, scratchDir } from '../support/fixtures.js';
import { sparseLoopDevice } from '../support/images.js';
import { inVm } from '../support/vm.js';

const run = promisify(execFile);

/** Device names unique to this run, so a leftover never collides. */
const prefix = `strata-${process.pid}`;

/** Creates a device with one table and makes it live; removed on cleanup. */
async function activate(cleanups: Cleanups, name: string, table: Parameters<typeof loadTable>[1]): Promise<string> {
  const info = await createDevice(name);
  cleanups.defer(() => removeDevice(name));
  await loadTable(name, table);
  await resumeDevice(name);
  return info.path;
}

/** A thin-pool over two loop devices (metadata, data) on sparse files. */
async function thinPool(cleanups: Cleanups, dir: string, name: string, dataBytes: number): Promise<string> {
  const metadata = await sparseLoopDevice(cleanups, dir, 'metadata.img', 16 << 20);
  const data = await sparseLoopDevice(cleanups, dir, 'data.img', dataBytes);
  // The driver's block size (64 KiB), low-water mark 0, and zeroing skipped: the
  // backing files are sparse.
  const params = `${metadata} ${data} ${BLOCK_SECTORS} 0 1 skip_block_zeroing`;
  return activate(cleanups, name, [{ start: 0, length: dataBytes / SECTOR, type: 'thin-pool', params }]);
}

/** A thin device `id` of the pool, created in the pool first; deleted on cleanup. */
async function thinDevice(cleanups: Cleanups, pool: string, poolPath: string, id: number, name: string, bytes: number) {
  await targetMessage(pool, `create_thin ${id}`);
  cleanups.defer(() => targetMessage(pool, `delete ${id}`));
  return activate(cleanups, name, [{ start: 0, length: bytes / SECTOR, type: 'thin', params: `${poolPath} ${id}` }]);
}

async function mountExt4(cleanups: Cleanups, device: string): Promise<string> {
  const dir = scratchDir(cleanups, 'mnt');
  await mount(dir, { source: device, fstype: 'ext4' });
  cleanups.defer(() => unmount(dir));
  return dir;
}


async function ourDevices(): Promise<string[]> {
  return (await listDevices()).map((d) => d.name).filter((n) => n.startsWith(prefix));
}

async function loopsBacking(dir: string): Promise<string[]> {
  return (await listLoops()).filter((l) => l.backingFile.startsWith(`${dir}/`)).map((l) => l.device);
}

describe('native device-mapper (in the VM)', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
    requireFeature(this, inVm || existsSync('/dev/mapper/control'), 'no device-mapper: run npm run test:vm');
  });
  afterEach(() => cleanups.release());

  it('reports the ioctl interface version', async function () {
    const [major, minor] = await dmVersion();
    expect(major).to.equal(4);
    expect(minor).to.be.at.least(27); // deferred remove
  });

  it('runs the dm-thin lifecycle: pool, thin device, ext4, snapshot, isolation, clean teardown', async function () {
    const devicesBefore = await listDevices();
    const dir = scratchDir(cleanups, 'thin');
    const pool = `${prefix}-pool`;
    const poolPath = await thinPool(cleanups, dir, pool, 512 << 20);
    const poolStatus = await targetStatus(pool);
    expect(poolStatus).to.have.length(1);
    expect(poolStatus[0]?.type).to.equal('thin-pool');
    expect(poolStatus[0]?.status).to.match(/^0 \d+\/\d+ 0\/8192 /); // transaction 0, no data used

    const origin = `${prefix}-thin0`;
    const originPath = await thinDevice(cleanups, pool, poolPath, 0, origin, 256 << 20);
    const node = statSync(originPath);
    const status = await deviceStatus(origin);
    expect(node.isBlockDevice()).to.equal(true);
    expect(node.rdev).to.equal(statSync(`/dev/dm-${status.minor}`).rdev);
    expect(status).to.include({ name: origin, activeTable: true, suspended: false, targetCount: 1 });

    await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', originPath]);
    const originDir = await mountExt4(cleanups, originPath);
    writeFileSync(join(originDir, 'file'), 'before the snapshot');
    expect((await deviceStatus(origin)).openCount).to.equal(1);

    // A snapshot of a live thin device: suspend it (flushing and freezing the
    // filesystem) so the snapshot is consistent, then resume.
    const suspended = await suspendDevice(origin);
    cleanups.defer(async () => {
      if ((await deviceStatus(origin)).suspended) await resumeDevice(origin);
    });
    expect(suspended.suspended).to.equal(true);
    await targetMessage(pool, 'create_snap 1 0');
    cleanups.defer(() => targetMessage(pool, 'delete 1'));
    expect((await resumeDevice(origin)).suspended).to.equal(false);

    const snapshot = `${prefix}-snap1`;
    const snapshotPath = await activate(cleanups, snapshot, [
      { start: 0, length: (256 << 20) / SECTOR, type: 'thin', params: `${poolPath} 1` },
    ]);
    const snapshotDir = await mountExt4(cleanups, snapshotPath);
    expect(readFileSync(join(snapshotDir, 'file'), 'utf8')).to.equal('before the snapshot');

    writeFileSync(join(originDir, 'file'), 'origin after');
    writeFileSync(join(snapshotDir, 'snapshot-only'), 'snapshot');
    expect(readFileSync(join(snapshotDir, 'file'), 'utf8')).to.equal('before the snapshot');
    expect(readFileSync(join(originDir, 'file'), 'utf8')).to.equal('origin after');
    expect(existsSync(join(originDir, 'snapshot-only'))).to.equal(false);

    // The kernel names the pool by its device number.
    const { major, minor } = await deviceStatus(pool);
    expect(await deviceTable(snapshot)).to.deep.equal([
      { start: 0, length: (256 << 20) / SECTOR, type: 'thin', params: `${major}:${minor} 1` },
    ]);
    expect(await ourDevices()).to.have.members([pool, origin, snapshot]);

    // The teardown a failure would run, in reverse: unmount, remove the thin
    // devices, delete their ids, remove the pool, detach the loops.
    await cleanups.release();
    expect(await listDevices()).to.deep.equal(devicesBefore);
    for (const name of [pool, origin, snapshot]) expect(existsSync(`/dev/mapper/${name}`), name).to.equal(false);
    expect(await loopsBacking(dir)).to.deep.equal([]);
  });

  it('refuses to remove a device in use (EBUSY), and removes it at its last close when deferred', async function () {
    const dir = scratchDir(cleanups, 'busy');
    const loop = await sparseLoopDevice(cleanups, dir, 'linear.img', 4 << 20);
    const name = `${prefix}-busy`;
    const info = await createDevice(name, { uuid: `${prefix}-uuid-busy` });
    expect(info).to.include({ name, uuid: `${prefix}-uuid-busy`, path: `/dev/mapper/${name}`, activeTable: false });
    let removed = false;
    cleanups.defer(() => (removed ? undefined : removeDevice(name)));
    await loadTable(name, [{ start: 0, length: (4 << 20) / SECTOR, type: 'linear', params: `${loop} 0` }]);
    expect(await deviceStatus(name)).to.include({ activeTable: false, inactiveTable: true });
    await resumeDevice(name);

    const fd = openSync(info.path, 'r');
    try {
      const error = await rejection(removeDevice(name));
      expect(error).to.include({ code: 'EBUSY', syscall: 'ioctl', command: 'DM_DEV_REMOVE', path: name });
      expect(error.message).to.equal(`EBUSY: Device or resource busy, ioctl DM_DEV_REMOVE '${name}'`);
      expect(error.stack).to.include('dm.test.ts');

      expect(await removeDevice(name, { deferred: true })).to.deep.equal({ deferred: true });
      expect(await deviceStatus(name)).to.include({ deferredRemove: true, openCount: 1 });
      expect(existsSync(info.path)).to.equal(false);
    } finally {
      closeSync(fd);
    }
    removed = true;
    expect(await ourDevices()).to.deep.equal([]);
  });

  it('rejects a table with an unknown target or bad params with the kernel reason', async function () {
    const name = `${prefix}-bad`;
    await createDevice(name);
    cleanups.defer(() => removeDevice(name));
    const load = (type: string, params: string) => rejection(loadTable(name, [{ start: 0, length: 8, type, params }]));

    const { major, minor } = await deviceStatus(name);
    const unknown = await load('no-such-target', '');
    expect(unknown).to.include({ code: 'EINVAL', syscall: 'ioctl', command: 'DM_TABLE_LOAD', path: name });
    expect(unknown.message).to.equal(
      `EINVAL: Invalid argument, ioctl DM_TABLE_LOAD '${name}' (kernel: device-mapper: table: ` +
        `${major}:${minor}: no-such-target: unknown target type; device-mapper: ioctl: error adding target to table)`,
    );
    const wrongCount = await load('linear', '');
    expect(wrongCount).to.include({ code: 'EINVAL', command: 'DM_TABLE_LOAD' });
    expect(wrongCount.message).to.match(/\(kernel: device-mapper: table: .*linear: Invalid argument count/);
    const noDevice = await load('linear', '/dev/nonexistent 0');
    expect(noDevice).to.include({ code: 'ENODEV', command: 'DM_TABLE_LOAD' });
    expect(noDevice.message).to.match(/\(kernel: device-mapper: table: .*linear: Device lookup failed/);
    expect((await deviceStatus(name)).inactiveTable).to.equal(false);
  });

  it('reads a table bigger than its first 16 KiB buffer (DM_BUFFER_FULL_FLAG)', async function () {
    const name = `${prefix}-big`;
    await createDevice(name);
    cleanups.defer(() => removeDevice(name));
    // 1000 "error" targets (built into dm_mod): about 48 KiB of table.
    const table = Array.from({ length: 1000 }, (_, i) => ({ start: i * 8, length: 8, type: 'error', params: '' }));
    await loadTable(name, table);
    await resumeDevice(name);
    expect(await deviceTable(name)).to.deep.equal(table);
    expect(await targetStatus(name)).to.have.length(1000);
    expect((await deviceStatus(name)).targetCount).to.equal(1000);
  });

  it('rejects a second device of the same name, and names a missing device ENXIO', async function () {
    const name = `${prefix}-dup`;
    await createDevice(name);
    cleanups.defer(() => removeDevice(name));
    const duplicate = await rejection(createDevice(name));
    expect(duplicate.code).to.be.oneOf(['EBUSY', 'EEXIST']);
    expect(duplicate).to.include({ syscall: 'ioctl', command: 'DM_DEV_CREATE', path: name });

    const missing = `${prefix}-missing`;
    for (const call of [deviceStatus(missing), resumeDevice(missing), removeDevice(missing), targetStatus(missing)]) {
      expect(await rejection(call)).to.include({ code: 'ENXIO', syscall: 'ioctl', path: missing });
    }
  });

  it('reports a refused thin-pool message with the kernel reason', async function () {
    const dir = scratchDir(cleanups, 'msg');
    const pool = `${prefix}-msgpool`;
    await thinPool(cleanups, dir, pool, 64 << 20);
    await targetMessage(pool, 'create_thin 7');
    cleanups.defer(() => targetMessage(pool, 'delete 7'));
    const again = await rejection(targetMessage(pool, 'create_thin 7'));
    expect(again).to.include({ syscall: 'ioctl', command: 'DM_TARGET_MSG', path: pool });
    expect(again.message).to.match(/\(kernel: device-mapper: .*7/);
    expect(await rejection(targetMessage(pool, 'no_such_message'))).to.include({ code: 'EINVAL' });

    // reserve/release_metadata_snap bracket reading the metadata live.
    await targetMessage(pool, 'reserve_metadata_snap');
    expect((await targetStatus(pool))[0]?.status).to.match(/^0 \d+\/\d+ 0\/\d+ \d+ /); // held root, not "-"
    await targetMessage(pool, 'release_metadata_snap');
    expect((await targetStatus(pool))[0]?.status).to.match(/^0 \d+\/\d+ 0\/\d+ - /);
  });

  describe('argument validation', function () {
    it('throws TypeErrors instead of crashing', function () {
      const target = { start: 0, length: 8, type: 'zero', params: '' };
      const bad: Array<[string, () => unknown]> = [
        ['missing name', () => (native.dmCreate as unknown as () => unknown)()],
        ['non-string name', () => native.dmCreate(7 as unknown as string, '')],
        ['empty name', () => native.dmStatus('')],
        ['slash in name', () => native.dmStatus('a/b')],
        ['dot name', () => native.dmStatus('..')],
        ['NUL in name', () => native.dmStatus('a\0b')],
        ['name too long', () => native.dmStatus('x'.repeat(128))],
        ['uuid too long', () => native.dmCreate('x', 'u'.repeat(129))],
        ['targets not an array', () => native.dmLoadTable('x', {} as unknown as [], false)],
        ['no targets', () => native.dmLoadTable('x', [], false)],
        ['target not an object', () => native.dmLoadTable('x', [1 as unknown as typeof target], false)],
        ['negative start', () => native.dmLoadTable('x', [{ ...target, start: -1 }], false)],
        ['zero length', () => native.dmLoadTable('x', [{ ...target, length: 0 }], false)],
        ['fractional length', () => native.dmLoadTable('x', [{ ...target, length: 1.5 }], false)],
        ['missing type', () => native.dmLoadTable('x', [{ ...target, type: undefined as unknown as string }], false)],
        ['type too long', () => native.dmLoadTable('x', [{ ...target, type: 't'.repeat(16) }], false)],
        ['NUL in params', () => native.dmLoadTable('x', [{ ...target, params: 'a\0b' }], false)],
        ['non-boolean readOnly', () => native.dmLoadTable('x', [target], 1 as unknown as boolean)],
        ['non-boolean deferred', () => native.dmRemove('x', 'yes' as unknown as boolean)],
        ['non-boolean table flag', () => native.dmTableStatus('x', undefined as unknown as boolean)],
        ['negative sector', () => native.dmMessage('x', -1, 'create_thin 0')],
        ['empty message', () => native.dmMessage('x', 0, '')],
      ];
      for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
    });
  });
});
