// The devicemapper driver, on the UML guest's kernel (the host has no
// device-mapper): npm run test:vm. The driver conformance suite, then what is
// devicemapper's own: thin ids and metadata agreeing after a crash,
// reconciliation on open, direct mode, xfs, and a teardown that leaves no
// device, loop device or mount behind.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { createDevice, deviceStatus, listDevices, loadTable, removeDevice, suspendDevice, targetMessage, targetStatus } from '../../lib/native/dm.js';
import { listLoops } from '../../lib/native/loop.js';
import { unmount } from '../../lib/native/mount.js';
import type { Digest } from '../../lib/store/digest.js';
import { Store } from '../../lib/store/store.js';
import { strata } from '../support/cli.js';
import { conformance, type Setup } from '../support/conformance.js';
import { Cleanups, isRoot, mountsBelow, requireFeature, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { sparseLoopDevice } from '../support/images.js';
import { tarOf, writeTree } from '../support/trees.js';
import { inVm } from '../support/vm.js';

/** Small sizes: every test makes its own pool and base filesystem. */
const SMALL = { 'dm.basesize': '256M', 'dm.loopdatasize': '2G', 'dm.loopmetadatasize': '64M' };

const loopLvm: Setup = { driver: 'devicemapper', backing: 'loop-lvm on tmpfs', root: (c) => tmpfsDir(c, '1g'), driverOptions: SMALL };

describe('devicemapper (in the VM)', function () {
  before(function () {
    if (!isRoot) this.skip();
    requireFeature(this, inVm || existsSync('/dev/mapper/control'), 'no device-mapper: run npm run test:vm');
  });

  conformance(loopLvm);

  describe('devicemapper specifics', function () {
    const cleanups = new Cleanups();
    let root: string;
    let work: string;
    let store: Store;

    beforeEach(async function () {
      root = await tmpfsDir(cleanups, '1g');
      work = scratchDir(cleanups, 'work');
      store = await open();
      cleanups.defer(() => store.shutdown());
    });
    afterEach(() => cleanups.release());

    const open = (options: Record<string, string> = SMALL) => Store.open({ root, driver: 'devicemapper', driverOptions: options });
    const status = (label: string) => store.driverStatus.find(([key]) => key === label)?.[1];
    const poolName = () => status('Pool Name')!;
    const prefix = () => poolName().replace(/-pool$/, '');

    function tarOfTree(name: string, files: Record<string, string>): string {
      writeTree(join(work, name), files);
      return tarOf(join(work, name), join(work, `${name}.tar`));
    }

    async function importTree(name: string, files: Record<string, string>, parent: Digest | null = null) {
      return (await store.layers.import(createReadStream(tarOfTree(name, files)), { parent, explicit: true })).layer;
    }

    function metadataIds(): Map<string, number> {
      const rows = store.db.prepare('SELECT key, thin_id FROM dm_devices').all() as Array<{ key: string; thin_id: number }>;
      return new Map(rows.map((r) => [r.key, r.thin_id]));
    }

    /** The thin ids the pool holds below its high-water mark: a thin table loads only for an id that exists. */
    async function poolIds(): Promise<number[]> {
      const highWater = Number((await targetStatus(poolName()))[0]!.status.split(' ')[0]);
      const probe = `${prefix()}-probe`;
      const ids: number[] = [];
      await createDevice(probe);
      try {
        for (let id = 0; id < highWater; id++) {
          const loaded = await loadTable(probe, [{ start: 0, length: 8, type: 'thin', params: `/dev/mapper/${poolName()} ${id}` }]).then(
            () => true,
            () => false,
          );
          if (loaded) ids.push(id);
        }
      } finally {
        await removeDevice(probe);
      }
      return ids;
    }

    const sorted = (ids: Iterable<number>) => [...ids].sort((a, b) => a - b);

    it('reports the pool, its space and its loop-lvm mode', function () {
      expect(poolName()).to.match(/^strata-[0-9a-f]{12}-pool$/);
      expect(status('Backing Filesystem')).to.equal('ext4');
      expect(status('Base Device Size')).to.equal('256 MiB');
      expect(status('Data Space Total')).to.equal('2 GiB');
      expect(status('Metadata Space Total')).to.match(/MiB$/);
      expect(status('Thin Pool Status')).to.equal('rw');
      expect(status('Mode')).to.match(/^loop-lvm: .*meant for testing only/);
      expect(status('Data file')).to.equal(join(root, 'devicemapper/devicemapper/data'));
    });

    it('gives each layer and container its own thin id, recorded with it, and deletes them on removal', async function () {
      const base = await importTree('base', { 'a': 'a' });
      const child = await importTree('child', { 'b': 'b' }, base.chainId);
      const c = await store.containers.create(child.chainId);
      const ids = metadataIds();
      expect([...ids.keys()].sort()).to.deep.equal(['base', base.cacheId, child.cacheId, c.cacheId].sort());
      expect(sorted(await poolIds())).to.deep.equal(sorted(ids.values()));
      expect(readdirSync(store.layers.chainDirs(child.chainId)[0]!).sort()).to.deep.equal(['a', 'b']);

      await store.containers.remove(c.id);
      await store.layers.remove(child.chainId);
      expect([...metadataIds().keys()].sort()).to.deep.equal(['base', base.cacheId].sort());
      expect(sorted(await poolIds())).to.deep.equal(sorted(metadataIds().values()));
      const names = (await listDevices()).map((d) => d.name).filter((n) => n.startsWith(prefix()));
      expect(names.sort()).to.deep.equal([`${prefix()}-${base.cacheId}`, poolName()].sort());
    });

    it('keeps thin ids and metadata in agreement after a crash between creating a thin device and committing', async function () {
      const base = await importTree('base', { 'a': 'a' });
      const tar = tarOfTree('big', { big: 'q'.repeat(8_000_000) });
      store.close();
      // The child imports without a parent: a snapshot of the base device, then the tar into it.
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../support/import-child.ts'), root, '-'], {
        env: { ...process.env, STRATA_STORAGE_DRIVER: 'devicemapper' },
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.stdin.on('error', () => {});
      child.stdin.write(readFileSync(tar).subarray(0, 4_000_000));
      const writing = () => readdirSync(join(root, 'devicemapper/mnt')).some((id) => existsSync(join(root, 'devicemapper/mnt', id, 'rootfs/big')));
      for (let i = 0; i < 1000 && !writing(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(writing(), 'the child started writing the layer').to.equal(true);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));

      store = await open();
      expect(store.recovered).to.have.length(1);
      expect([...metadataIds().keys()].sort()).to.deep.equal(['base', base.cacheId].sort());
      expect(sorted(await poolIds())).to.deep.equal(sorted(metadataIds().values()));
      expect(store.layers.list().map((l) => l.chainId)).to.deep.equal([base.chainId]);
    });

    it('reconciles the pool with the metadata on open: strays deleted, missing devices reported', async function () {
      const a = await importTree('a', { a: 'a' });
      const b = await importTree('b', { b: 'b' });
      const freed = metadataIds().get(b.cacheId)!;
      await store.layers.remove(b.chainId);
      // Behind the store's back: a thin id the metadata does not know, and a
      // layer's thin device deleted.
      await targetMessage(poolName(), `create_thin ${freed}`);
      const lost = metadataIds().get(a.cacheId)!;
      await unmount(join(root, 'devicemapper/mnt', a.cacheId));
      await removeDevice(`${prefix()}-${a.cacheId}`);
      await targetMessage(poolName(), `delete ${lost}`);
      store.close();

      store = await open();
      expect(status('Deleted Stray Thin Ids')).to.equal(String(freed));
      expect(status('Metadata Without Thin Devices')).to.equal(a.cacheId);
      expect(sorted(await poolIds())).to.deep.equal([metadataIds().get('base')!]);
      await store.layers.remove(a.chainId);
      expect([...metadataIds().keys()]).to.deep.equal(['base']);
    });

    it('tears down to nothing: no device, loop device or mount left, and opens again with the data', async function () {
      const layer = await importTree('t', { 'etc/hosts': 'h\n' });
      const c = await store.containers.create(layer.chainId);
      const rootfs = await store.containers.mount(c.id);
      writeFileSync(join(rootfs, 'kept'), 'k');
      const prefixNow = prefix();
      await store.shutdown();
      expect((await listDevices()).filter((d) => d.name.startsWith(prefixNow))).to.deep.equal([]);
      expect((await listLoops()).filter((l) => l.backingFile.startsWith(`${root}/`))).to.deep.equal([]);
      expect(mountsBelow(root).filter((m) => m !== root)).to.deep.equal([]);

      store = await open();
      expect(readFileSync(join(store.containers.layout(store.containers.get(c.id)!).upper, 'kept'), 'utf8')).to.equal('k');
      expect(await store.containers.changes(c.id)).to.deep.equal([{ kind: 'A', path: '/kept' }]);
    });

    it('shows the pool in strata info, and resumes a device a dead process left suspended', async function () {
      const layer = await importTree('s', { a: 'a' });
      const device = `${prefix()}-${layer.cacheId}`;
      await suspendDevice(device);
      store.close();
      const info = strata(['--root', root, 'info']);
      expect(info.code, info.stderr).to.equal(0);
      expect(info.stdout).to.include(`Storage Driver: devicemapper\n Pool Name: ${poolName()}\n`);
      expect(info.stdout).to.match(/\n Data Space Used: [\d.]+ MiB\n Data Space Total: 2 GiB\n/);
      expect(info.stdout, info.stdout).to.match(/\n Metadata Space Used: [\d.]+ [KM]iB\n Metadata Space Total: 64 MiB\n/);
      expect(info.stdout).to.include('\n Thin Pool Status: rw\n');
      expect(info.stdout).to.include('\n Layers: 1\n');
      expect((await deviceStatus(device)).suspended).to.equal(false);
      store = await open();
    });

    it('takes its options from $STRATA_STORAGE_OPTS on the command line', async function () {
      const other = join(work, 'cli');
      const env = { STRATA_STORAGE_OPTS: Object.entries({ ...SMALL, 'dm.basesize': '300M' }).map(([k, v]) => `${k}=${v}`).join(',') };
      const made = strata(['--root', other, '--storage-driver', 'devicemapper', 'layer', 'ls'], { env });
      cleanups.defer(async () => (await Store.open({ root: other })).shutdown());
      expect(made.code, made.stderr).to.equal(0);
      const info = strata(['--root', other, 'info']);
      expect(info.stdout).to.include('\n Base Device Size: 300 MiB\n');
      const bad = strata(['--root', join(work, 'bad'), '--storage-driver', 'devicemapper', 'layer', 'ls'], { env: { STRATA_STORAGE_OPTS: 'dm.basesize' } });
      expect(bad.stderr).to.equal('Error: storage option "dm.basesize" is not key=value\n');
    });

    it('makes snapshots of one layer one at a time, in parallel callers', async function () {
      const layer = await importTree('p', { 'etc/hosts': 'h\n' });
      const made = await Promise.all([1, 2, 3, 4].map(() => store.containers.create(layer.chainId)));
      for (const c of made) {
        expect(readFileSync(join(await store.containers.mount(c.id), 'etc/hosts'), 'utf8')).to.equal('h\n');
        expect((await deviceStatus(`${prefix()}-${c.cacheId}`)).suspended).to.equal(false);
      }
      expect((await deviceStatus(`${prefix()}-${layer.cacheId}`)).suspended).to.equal(false);
      expect(existsSync(join(root, 'devicemapper/pool.lock'))).to.equal(false);
      expect(sorted(await poolIds())).to.deep.equal(sorted(metadataIds().values()));
    });

    it('retries a busy mount on removal, then names it', async function () {
      const layer = await importTree('busy', { file: 'f' });
      const fd = openSync(join(store.layers.chainDirs(layer.chainId)[0]!, 'file'), 'r');
      try {
        const error = await store.layers.remove(layer.chainId).then(
          () => expect.fail('expected a refusal'),
          (e: { code?: string; message: string }) => e,
        );
        expect(error.code).to.equal('ERR_DRIVER_BUSY');
        expect(error.message).to.equal(`devicemapper: the mount ${join(root, 'devicemapper/mnt', layer.cacheId)} stays busy (in use by a process or a mount)`);
      } finally {
        closeSync(fd);
      }
    });

    it('refuses new devices on a pool out of data space, with a clear error, until space is freed', async function () {
      await store.shutdown();
      // A fresh store whose pool (96 MiB) is smaller than its devices (256 MiB).
      root = join(await tmpfsDir(cleanups, '1g'), 'store');
      store = await open({ ...SMALL, 'dm.loopdatasize': '96M' });
      const layer = await importTree('small', { a: 'a' });
      const hog = await store.containers.create(layer.chainId);
      const fd = openSync(join(await store.containers.mount(hog.id), 'hog'), 'w');
      try {
        // error_if_no_space: the write-back fails at once rather than queueing.
        expect(() => {
          for (let i = 0; i < 160; i++) writeSync(fd, Buffer.alloc(1 << 20, 1));
          fsyncSync(fd);
        }).to.throw(/EIO|ENOSPC/);
      } finally {
        closeSync(fd);
      }
      const refusal = await store.containers.create(layer.chainId).then(
        () => expect.fail('expected a refusal'),
        (e: { code?: string; message: string }) => e,
      );
      expect(refusal.code).to.equal('ERR_DRIVER_NO_SPACE');
      expect(refusal.message).to.match(new RegExp(`^devicemapper: the thin pool ${poolName()} is out of data space: data 96 of 96 MiB`));
      expect(store.containers.list()).to.have.length(1);
      expect(sorted(await poolIds())).to.deep.equal(sorted(metadataIds().values()));

      await store.containers.remove(hog.id, { force: true });
      await store.containers.create(layer.chainId);
    });

    it('rolls back a layer whose import fills the pool: no layer, no thin id, no device left, and imports again once space is freed', async function () {
      await store.shutdown();
      root = join(await tmpfsDir(cleanups, '1g'), 'store');
      store = await open({ ...SMALL, 'dm.loopdatasize': '96M' });
      const base = await importTree('base', { a: 'a' });
      const devices = async () => (await listDevices()).map((d) => d.name).sort();
      const before = { layers: store.layers.list().length, ids: sorted(metadataIds().values()), devices: await devices(), mounts: mountsBelow(root) };
      // 160 MiB of data for a 96 MiB pool; random bytes, so nothing is sparse or shared.
      mkdirSync(join(work, 'big'));
      writeFileSync(join(work, 'big', 'blob'), randomBytes(160 << 20));
      const archive = tarOf(join(work, 'big'), join(work, 'big.tar'));

      const failure = await store.layers.import(createReadStream(archive), { parent: base.chainId, explicit: true }).then(
        () => expect.fail('expected the import to fail'),
        (e: { code?: string; message: string }) => e,
      );
      expect(failure.code).to.equal('ERR_DRIVER_NO_SPACE');
      expect(failure.message).to.match(new RegExp(`^devicemapper: the thin pool ${poolName()} is out of data space`));
      expect(store.layers.list()).to.have.length(before.layers);
      expect(sorted(metadataIds().values())).to.deep.equal(before.ids);
      expect(sorted(await poolIds())).to.deep.equal(before.ids);
      expect(store.db.prepare('SELECT count(*) FROM staging').pluck().get()).to.equal(0);
      expect(mountsBelow(root)).to.deep.equal(before.mounts);
      expect(await devices()).to.deep.equal(before.devices);

      // The space the failed import wrote is the pool's again: a layer that fits goes in.
      rmSync(join(work, 'big', 'blob'));
      writeFileSync(join(work, 'big', 'blob'), randomBytes(16 << 20));
      const fits = tarOf(join(work, 'big'), join(work, 'fits.tar'));
      const layer = (await store.layers.import(createReadStream(fits), { parent: base.chainId, explicit: true })).layer;
      expect(store.layers.get(layer.chainId)).to.not.equal(undefined);
    });

    it('refuses options the pool cannot change, and unknown ones', async function () {
      store.close();
      const refusal = (options: Record<string, string>) =>
        open(options).then(
          (s) => (s.close(), expect.fail('expected a refusal')),
          (e: { code?: string; message: string }) => e,
        );
      expect(await refusal({ 'dm.fs': 'xfs' })).to.include({ code: 'ERR_DRIVER_UNSUPPORTED' });
      store = await open();
      const other = join(work, 'other');
      const unknown = await Store.open({ root: other, driver: 'devicemapper', driverOptions: { 'dm.nosuch': '1' } }).then(
        (s) => (s.close(), expect.fail('expected a refusal')),
        (e: { code?: string; message: string }) => e,
      );
      expect(unknown.message).to.match(/unknown option dm\.nosuch/);
    });
  });

  describe('devicemapper on named block devices, with xfs', function () {
    const cleanups = new Cleanups();
    afterEach(() => cleanups.release());

    it('makes its pool on the devices it is given (direct mode) and mounts xfs snapshots (nouuid)', async function () {
      const dir = await tmpfsDir(cleanups, '1g');
      const device = (name: string, bytes: number) => sparseLoopDevice(cleanups, dir, name, bytes);
      const metadata = await device('meta.img', 32 << 20);
      const data = await device('data.img', 1 << 30);
      const root = join(dir, 'store');
      const options = { 'dm.datadev': data, 'dm.metadatadev': metadata, 'dm.fs': 'xfs', 'dm.basesize': '320M' };
      let store = await Store.open({ root, driver: 'devicemapper', driverOptions: options });
      cleanups.defer(() => store.shutdown());
      expect(store.driverStatus).to.deep.include(['Data device', data]);
      expect(store.driverStatus).to.deep.include(['Backing Filesystem', 'xfs']);
      expect(store.driverStatus.map(([k]) => k)).not.to.include('Mode');

      const src = join(dir, 'src');
      writeTree(src, { 'etc/hosts': 'h\n' });
      const { layer } = await store.layers.import(createReadStream(tarOf(src, join(dir, 'l.tar'))));
      const a = await store.containers.create(layer.chainId);
      const b = await store.containers.create(layer.chainId);
      writeFileSync(join(await store.containers.mount(a.id), 'etc/hosts'), 'a\n');
      expect(readFileSync(join(await store.containers.mount(b.id), 'etc/hosts'), 'utf8')).to.equal('h\n');

      await store.shutdown();
      store = await Store.open({ root, driver: 'devicemapper' });
      expect(readFileSync(join(store.containers.layout(a).upper, 'etc/hosts'), 'utf8')).to.equal('a\n');
    });
  });
});
