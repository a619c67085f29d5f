import { expect } from 'chai';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';

import { attachLoop, detachLoop, listLoops } from '../../lib/native/loop.js';
import { mount } from '../../lib/native/mount.js';
import { checkStore, type Finding } from '../../lib/store/fsck.js';
import { ownStart } from '../../lib/store/staging.js';
import { Store } from '../../lib/store/store.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, mountsBelow, tmpfsDir } from '../support/fixtures.js';
import { fsImage } from '../support/images.js';
import { buildTar } from '../support/tar-builder.js';

const tarOf = (files: Record<string, string>) => Readable.from([buildTar(Object.entries(files).map(([name, data]) => ({ name, data })))]);

const summary = (findings: Finding[]) => findings.map((f) => `${f.kind} ${f.object} ${f.repaired ? 'repaired' : 'left'}`);

describe('store fsck', function () {
  const cleanups = new Cleanups();
  let root: string;
  let store: Store;

  before(function () {
    if (!isRoot) this.skip();
  });

  beforeEach(async function () {
    root = await tmpfsDir(cleanups);
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
  });
  afterEach(() => cleanups.release());

  /** A base layer, a child, an image on the child, a container from the image, a volume it mounts. */
  async function populate() {
    const base = (await store.layers.import(tarOf({ a: '1' }), { explicit: true })).layer;
    const child = (await store.layers.import(tarOf({ b: '2' }), { parent: base.chainId })).layer;
    const config = { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [base.diffId, child.diffId] } };
    const image = store.images.add(Buffer.from(JSON.stringify(config)), { tags: ['app:1'] }).image;
    await store.volumes.create('data');
    const container = await store.containers.create(child.chainId, { image: image.id, mounts: [{ type: 'volume', source: 'data', target: '/data', readOnly: false, noCopy: false, driverOptions: {}, labels: {} }] });
    return { base, child, image, container };
  }

  /** Checks, repairs, then checks again: the second run must find nothing. */
  async function repairAll(): Promise<Finding[]> {
    const found = await checkStore(store, { repair: true });
    expect(summary(await checkStore(store)), 'after repair').to.deep.equal([]);
    return found;
  }

  it('finds nothing wrong in a store in use, mounted or not, with its volumes on a filesystem of their own', async function () {
    await mount(join(root, 'volumes'), { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    const { container } = await populate();
    expect(await checkStore(store)).to.deep.equal([]);
    await store.containers.mount(container.id);
    expect(await checkStore(store)).to.deep.equal([]);
    await store.containers.unmount(container.id);
    expect(await checkStore(store)).to.deep.equal([]);
  });

  it('drops a layer whose data is gone when nothing needs it, and reports one that is still used', async function () {
    const { base } = await populate();
    const lone = (await store.layers.import(tarOf({ lone: 'x' }), { explicit: true })).layer;
    rmSync(join(root, 'overlay2', lone.cacheId), { recursive: true });
    rmSync(join(root, 'overlay2', base.cacheId, 'diff'), { recursive: true });
    const found = await checkStore(store, { repair: true });
    expect(summary(found)).to.have.members([`missing-data ${lone.chainId} repaired`, `missing-data ${base.chainId} left`]);
    expect(store.layers.get(lone.chainId)).to.equal(undefined);
    expect(store.layers.get(base.chainId)).to.not.equal(undefined);
  });

  it('drops a container whose writable layer is gone, releasing its layer', async function () {
    const { child, container } = await populate();
    const refs = store.layers.get(child.chainId)!.refs;
    rmSync(join(root, 'overlay2', container.cacheId), { recursive: true });
    expect(summary(await repairAll())).to.deep.equal([`missing-data ${container.id} repaired`]);
    expect(store.containers.get(container.id)).to.equal(undefined);
    expect(store.layers.get(child.chainId)!.refs).to.equal(refs - 1);
  });

  it('removes directories that no layer, container or volume owns', async function () {
    await populate();
    const orphanLayer = join(root, 'overlay2', 'f'.repeat(64));
    mkdirSync(join(orphanLayer, 'diff'), { recursive: true });
    writeFileSync(join(orphanLayer, 'diff', 'junk'), 'junk');
    const orphanVolume = join(root, 'volumes', 'ghost');
    mkdirSync(join(orphanVolume, '_data'), { recursive: true });
    expect(summary(await repairAll())).to.have.members([`orphan-data ${orphanLayer} repaired`, `orphan-data ${orphanVolume} repaired`]);
    expect(existsSync(orphanLayer)).to.equal(false);
    expect(existsSync(orphanVolume)).to.equal(false);
    expect(readdirSync(join(root, 'volumes'))).to.deep.equal(['data']);
  });

  it('recounts references from what uses each layer, and removes a layer nothing uses', async function () {
    const { base, child } = await populate();
    const unused = (await store.layers.import(tarOf({ u: '1' }), { parent: child.chainId })).layer;
    store.db.prepare('UPDATE layers SET refs = refs + 2 WHERE chain_id = ?').run(base.chainId);
    store.db.prepare('UPDATE layers SET refs = 0 WHERE chain_id = ?').run(child.chainId);
    const childRefs = 3; // the image, the container, and the unused child until fsck removes it
    const found = await repairAll();
    expect(summary(found)).to.have.members([
      `refcount ${base.chainId} repaired`,
      `refcount ${child.chainId} repaired`,
      `unused-layer ${unused.chainId} repaired`,
    ]);
    expect(store.layers.get(unused.chainId)).to.equal(undefined);
    expect(existsSync(join(root, 'overlay2', unused.cacheId))).to.equal(false);
    expect(store.layers.get(base.chainId)!.refs).to.equal(2); // its child, its explicit import
    expect(store.layers.get(child.chainId)!.refs).to.equal(childRefs - 1);
  });

  it('unmounts mounts nothing owns and fixes mount counts', async function () {
    const { container } = await populate();
    const { merged } = store.containers.layout(container);
    // Mounted with no count, as a crash between mount and count leaves it.
    await store.containers.mount(container.id);
    store.db.prepare('UPDATE containers SET mounts = 0').run();
    const stray = join(root, 'containers', 'stray');
    mkdirSync(stray);
    await mount(stray, { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    const found = await repairAll();
    expect(summary(found)).to.include.members([`stale-mount ${stray} repaired`, `stale-mount ${merged} repaired`]);
    expect(mountsBelow(root).filter((p) => p !== root)).to.deep.equal([]);

    // A count with nothing mounted.
    store.db.prepare('UPDATE containers SET mounts = 2').run();
    expect(summary(await repairAll())).to.deep.equal([`mount-count ${container.id} repaired`]);
    expect(store.containers.get(container.id)!.mounts).to.equal(0);
  });

  it('detaches a loop device left on a file in the root', async function () {
    const image = join(root, 'containers', 'disk.img');
    writeFileSync(image, Buffer.alloc(1 << 20));
    const loop = await attachLoop(image);
    await loop.close();
    cleanups.defer(async () => {
      if ((await listLoops()).some((l) => l.backingFile === image)) await detachLoop(loop.device);
    });
    const found = await checkStore(store, { repair: true });
    expect(summary(found)).to.deep.equal([`leaked-loop ${loop.device} repaired`]);
    expect((await listLoops()).map((l) => l.backingFile)).to.not.include(image);
  });

  /** Leaves a hold of a dead process on `layer`, then reopens: the open must release it. */
  async function reopenWithDeadHold(layer: string): Promise<void> {
    store.db.prepare("INSERT INTO layer_holds (layer, pid, pid_start) VALUES (?, ?, 'gone')").run(layer, process.pid);
    store.db.prepare('UPDATE layers SET refs = refs + 1 WHERE chain_id = ?').run(layer);
    store.close();
    store = await Store.open({ root });
    expect(store.recovered).to.deep.equal([
      `fsck: unfinished-work ${layer}: a reference held by process ${process.pid}, which is gone, for an import it did not finish (repaired)`,
    ]);
  }

  it('releases the holds of a process that died, when the next open finds its session marker', async function () {
    const { child } = await populate();
    const refs = store.layers.get(child.chainId)!.refs;
    // What a process killed between importing a layer and adding its image leaves: this pid, another start time.
    const marker = join(root, 'image', 'sessions', `${process.pid}-${Number(ownStart) + 1}-0`);
    writeFileSync(marker, '');
    await reopenWithDeadHold(child.chainId);
    expect(existsSync(marker)).to.equal(false);
    expect(store.layers.get(child.chainId)!.refs).to.equal(refs);
    store.close();
    store = await Store.open({ root });
    expect(store.recovered, 'a clean shutdown').to.deep.equal([]);
    expect(readdirSync(join(root, 'image', 'sessions')), 'the open store\'s own marker').to.have.length(1);
    store.close();
    expect(readdirSync(join(root, 'image', 'sessions'))).to.deep.equal([]);
  });

  it('also finds the session of a dead process in the sessions table, where stratafs recorded them before its marker files', async function () {
    const { child } = await populate();
    const refs = store.layers.get(child.chainId)!.refs;
    store.db.prepare("INSERT INTO sessions (pid, pid_start, opened) VALUES (?, 'gone', '')").run(process.pid);
    await reopenWithDeadHold(child.chainId);
    expect(store.layers.get(child.chainId)!.refs).to.equal(refs);
    store.close();
    store = await Store.open({ root });
    expect(store.recovered, 'a clean shutdown').to.deep.equal([]);
  });

  it('refuses to create a container from an image removed meanwhile, and to remove an image a container uses', async function () {
    const { child, image } = await populate();
    const error = await store.images.remove(image.id).catch((e: unknown) => e as { code: string });
    expect(error).to.have.property('code', 'ERR_IMAGE_IN_USE');
    await store.images.remove(image.id, { force: true });
    const refused = await store.containers.create(child.chainId, { image: image.id }).catch((e: unknown) => e as { code: string; message: string });
    expect(refused).to.have.property('code', 'ERR_IMAGE_UNKNOWN');
    expect(refused).to.have.property('message').that.matches(/was removed while the container was being created/);
    expect(await checkStore(store)).to.deep.equal([]);
  });

  it('refuses to remove a container whose directory a live commit is moving into its layer', async function () {
    const { container } = await populate();
    const { upper } = store.containers.layout(container);
    // What a commit in another process records between registering its layer and moving the directory.
    store.db.prepare('INSERT INTO adoptions (from_path, to_path, pid, pid_start) VALUES (?, ?, ?, ?)').run(upper, `${upper}.moved`, process.pid, ownStart);
    const refused = await store.containers.remove(container.id).catch((e: unknown) => e as { code: string; message: string });
    expect(refused).to.have.property('code', 'ERR_CONTAINER_BUSY');
    expect(refused).to.have.property('message').that.matches(/is being committed by another process/);
    expect(existsSync(upper)).to.equal(true);
    store.db.prepare('DELETE FROM adoptions').run();
  });

  it('finishes the move of a commit whose process died before mounting or removing the container', async function () {
    const { container } = await populate();
    const { upper } = store.containers.layout(container);
    writeFileSync(join(upper, 'committed'), 'mine now');
    // A commit recorded its layer, then its process died before moving the directory.
    store.db.prepare('INSERT INTO adoptions (from_path, to_path, pid, pid_start) VALUES (?, ?, ?, ?)').run(upper, `${upper}.moved`, 2 ** 22 + 1, 'gone');
    const rootfs = await store.containers.mount(container.id);
    expect(readdirSync(`${upper}.moved`)).to.deep.equal(['committed']);
    expect(existsSync(join(rootfs, 'committed'))).to.equal(false);
    expect(store.db.prepare('SELECT count(*) AS n FROM adoptions').get()).to.deep.equal({ n: 0 });
    await store.containers.unmount(container.id);
    rmSync(`${upper}.moved`, { recursive: true });
  });

  it('strata system fsck reports, exits 1 while problems remain, and repairs with --repair', async function () {
    await populate();
    store.close();
    const orphan = join(root, 'overlay2', 'e'.repeat(64));
    mkdirSync(orphan);
    const env = { STRATA_ROOT: root };
    const check = strata(['system', 'fsck', '--format', 'json'], { env });
    expect(check.code, check.stderr).to.equal(1);
    expect(check.stderr).to.equal('Error: 1 problem(s) found: run strata system fsck --repair\n');
    expect(JSON.parse(check.stdout)).to.deep.include({ kind: 'orphan-data', object: orphan, repaired: false });
    const repair = strata(['system', 'fsck', '--repair'], { env });
    expect(repair.code, repair.stderr).to.equal(0);
    expect(repair.stdout).to.match(/^KIND\s+OBJECT\s+REPAIRED\s+DETAIL\norphan-data\s+\S+\s+yes\s+no layer/);
    const clean = strata(['system', 'fsck'], { env });
    expect([clean.code, clean.stdout, clean.stderr]).to.deep.equal([
      0,
      `No problems found: checked 2 layer(s), 1 container(s), 1 volume(s), their data, and the mounts and devices under ${root}\n`,
      '',
    ]);
    const cleanJson = strata(['system', 'fsck', '--format', 'json'], { env });
    expect([cleanJson.code, cleanJson.stdout, cleanJson.stderr]).to.deep.equal([0, '', '']);
    store = await Store.open({ root });
  });
});

describe('store fsck on the other drivers', function () {
  const cleanups = new Cleanups();

  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  for (const driver of ['vfs', 'btrfs'] as const) {
    it(`${driver}: finds nothing in a store in use, then finds and repairs an orphan directory and a layer whose data is gone`, async function () {
      const root = join(driver === 'btrfs' ? await fsImage(cleanups, 'btrfs') : await tmpfsDir(cleanups), 'root');
      const store = await Store.open({ root, driver });
      cleanups.defer(() => store.close());
      const base = (await store.layers.import(tarOf({ a: '1' }), { explicit: true })).layer;
      const lone = (await store.layers.import(tarOf({ b: '2' }), { explicit: true })).layer;
      const container = await store.containers.create(base.chainId);
      await store.containers.mount(container.id);
      expect(await checkStore(store)).to.deep.equal([]);
      await store.containers.unmount(container.id);
      await store.containers.commit(container.id);
      expect(await checkStore(store)).to.deep.equal([]);

      const layerArea = dirname(store.driver.layerPath(base.cacheId));
      const orphan = join(layerArea, 'd'.repeat(64));
      mkdirSync(orphan);
      await store.driver.removePath(store.driver.layerPath(lone.cacheId));
      const found = await checkStore(store, { repair: true });
      expect(summary(found)).to.have.members([`orphan-data ${orphan} repaired`, `missing-data ${lone.chainId} repaired`]);
      expect(await checkStore(store)).to.deep.equal([]);
      expect(existsSync(orphan)).to.equal(false);
    });
  }
});
