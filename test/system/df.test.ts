// system df: docker's quantities (moby.md §6) from the store's counters, on
// real stores: layer sizes from import, shared vs unique between images on
// one base, container sizes recorded at unmount and measured live while
// mounted, volumes, reclaimable space; through the library and the CLI.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { parseVolumeFlag } from '../../lib/mounts/spec.js';
import { Store } from '../../lib/store/store.js';
import { diskUsage } from '../../lib/store/usage.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, tmpfsDir } from '../support/fixtures.js';
import { addImage, containerOf, sizedLayer } from './fixtures.js';

describe('system df', function () {
  this.timeout(60_000);
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
  afterEach(async function () {
    for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true }).catch(() => {});
    await cleanups.release();
  });

  const base = sizedLayer('base', 1000);

  it('sizes images from their layers: shared with another image, unique, and what unused ones would free', async function () {
    const web = await addImage(store, [base, sizedLayer('web', 200)], { tags: ['web:1'] });
    const api = await addImage(store, [base, sizedLayer('api', 300)], { tags: ['api:1'] });
    const tool = await addImage(store, [sizedLayer('tool', 50)]);
    await containerOf(store, web);

    const { images } = await diskUsage(store);
    const byId = new Map(images.items.map((i) => [i.id, i]));
    expect(byId.get(web)).to.include({ size: 1200, sharedSize: 1000, uniqueSize: 200, containers: 1 });
    expect(byId.get(web)!.tags).to.deep.equal(['web:1']);
    expect(byId.get(api)).to.include({ size: 1300, sharedSize: 1000, uniqueSize: 300, containers: 0 });
    expect(byId.get(tool)).to.include({ size: 50, sharedSize: 0, uniqueSize: 50, containers: 0 });
    // Each layer once; what the images without containers hold alone.
    expect(images).to.include({ totalCount: 3, activeCount: 1, totalSize: 1550, reclaimable: 350 });
  });

  it("keeps a container's size as recorded at its last unmount, measures a mounted one live, and zeroes it at commit", async function () {
    const image = await addImage(store, [base], { tags: ['base:1'] });
    const idle = await containerOf(store, image, { name: 'idle' });
    const busy = await containerOf(store, image, { name: 'busy' });
    expect(store.containers.get(idle.id)!.sizeRw).to.equal(0);

    writeFileSync(join(await store.containers.mount(idle.id), 'data'), Buffer.alloc(4096, 1));
    await store.containers.unmount(idle.id);
    expect(store.containers.get(idle.id)!.sizeRw, 'recorded at unmount').to.equal(4096);
    const rootfs = await store.containers.mount(busy.id);
    writeFileSync(join(rootfs, 'a'), Buffer.alloc(700, 1));

    let { containers } = await diskUsage(store);
    const byName = new Map(containers.items.map((c) => [c.name, c]));
    expect(byName.get('idle')).to.include({ sizeRw: 4096, sizeRootFs: 5096, mounts: 0, image });
    expect(byName.get('busy')).to.include({ sizeRw: 700, sizeRootFs: 1700, mounts: 1 });
    // Active (mounted) containers are not reclaimable.
    expect(containers).to.include({ totalCount: 2, activeCount: 1, totalSize: 4796, reclaimable: 4096 });

    writeFileSync(join(rootfs, 'b'), Buffer.alloc(300, 1));
    expect((await diskUsage(store)).containers.totalSize, 'live while mounted').to.equal(5096);
    await store.containers.unmount(busy.id);
    expect(store.containers.get(busy.id)!.sizeRw).to.equal(1000);

    await store.containers.commit(idle.id);
    expect(store.containers.get(idle.id)!.sizeRw, 'its changes became a layer').to.equal(0);
    ({ containers } = await diskUsage(store));
    expect(containers).to.include({ totalSize: 1000, reclaimable: 1000, activeCount: 0 });
  });

  it('measures, and then records, a size not known (a container from before the counters)', async function () {
    const image = await addImage(store, [base]);
    const container = await containerOf(store, image);
    writeFileSync(join(await store.containers.mount(container.id), 'f'), 'x'.repeat(123));
    await store.containers.unmount(container.id);
    store.db.prepare('UPDATE containers SET size_rw = NULL WHERE id = ?').run(container.id);

    expect((await diskUsage(store)).containers.totalSize).to.equal(123);
    expect(store.containers.get(container.id)!.sizeRw).to.equal(123);
  });

  it('on vfs, where only a diff can size a container, measures it at the next df and records it', async function () {
    const vfsRoot = await tmpfsDir(cleanups);
    const vfs = await Store.open({ root: vfsRoot, driver: 'vfs' });
    cleanups.defer(() => vfs.close());
    const image = await addImage(vfs, [base]);
    const container = await containerOf(vfs, image);
    writeFileSync(join(await vfs.containers.mount(container.id), 'f'), 'x'.repeat(321));
    await vfs.containers.unmount(container.id);
    expect(vfs.containers.get(container.id)!.sizeRw, 'not walked at unmount').to.equal(null);

    const { containers } = await diskUsage(vfs);
    expect(containers.items[0]).to.include({ sizeRw: 321, sizeRootFs: 1321 });
    expect(vfs.containers.get(container.id)!.sizeRw).to.equal(321);
    await vfs.containers.remove(container.id);
  });

  it('counts local volumes without options: links, size, reclaimable', async function () {
    const image = await addImage(store, [base]);
    const used = await store.volumes.create('used');
    const spare = await store.volumes.create();
    await store.volumes.create('tmp', { options: { type: 'tmpfs', device: 'tmpfs' } });
    writeFileSync(join(used.mountpoint, 'db'), Buffer.alloc(500));
    writeFileSync(join(spare.mountpoint, 'cache'), Buffer.alloc(40));
    const top = store.images.get(image)!.topLayer!;
    await store.containers.create(top, { mounts: [parseVolumeFlag('used:/db')] });

    const { volumes, buildCache } = await diskUsage(store);
    expect(volumes.items.map((v) => [v.name, v.links, v.size]).sort()).to.deep.equal([[spare.name, 0, 40], ['used', 1, 500]]);
    expect(volumes).to.include({ totalCount: 2, activeCount: 1, totalSize: 540, reclaimable: 40 });
    expect(buildCache).to.include({ totalCount: 0, totalSize: 0, reclaimable: 0 });
  });

  it('prints the summary, the verbose tables and JSON as docker does', async function () {
    const web = await addImage(store, [base, sizedLayer('web', 200)], { tags: ['web:1'] });
    await addImage(store, [base, sizedLayer('api', 300)], { tags: ['api:1'] });
    const container = await containerOf(store, web, { name: 'app' });
    writeFileSync(join(await store.containers.mount(container.id), 'f'), Buffer.alloc(2500));
    await store.containers.unmount(container.id);
    const cli = (...args: string[]) => {
      const result = strata(['--root', root, 'system', 'df', ...args]);
      expect(result.code, result.stderr).to.equal(0);
      return result.stdout;
    };

    expect(cli().split('\n')).to.deep.equal([
      'TYPE            TOTAL   ACTIVE   SIZE    RECLAIMABLE',
      'Images          2       1        1.5kB   300B (20%)',
      'Containers      1       0        2.5kB   2.5kB (100%)',
      'Local Volumes   0       0        0B      0B',
      'Build Cache     0       0        0B      0B',
      '',
    ]);

    const verbose = cli('-v');
    expect(verbose).to.match(/^Images space usage:\n\nREPOSITORY +TAG +IMAGE ID +CREATED +SIZE +SHARED SIZE +UNIQUE SIZE +CONTAINERS\n/);
    expect(verbose).to.match(/\nweb +1 +[0-9a-f]{12} +.+ ago +1.2kB +1kB +200B +1\n/);
    expect(verbose).to.match(/\napi +1 +[0-9a-f]{12} +.+ ago +1.3kB +1kB +300B +0\n/);
    expect(verbose).to.match(/\nContainers space usage:\n\nCONTAINER ID +IMAGE +LOCAL VOLUMES +SIZE +VIRTUAL SIZE +CREATED +STATUS +NAMES\n[0-9a-f]{12} +web:1 +0 +2.5kB +3.7kB +.+ ago +Not mounted +app\n/);
    expect(verbose).to.include('\nLocal Volumes space usage:\n\nVOLUME NAME   LINKS   SIZE\n');
    expect(verbose).to.include('\nBuild cache usage: 0B\n');

    const json = cli('--format', 'json').trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(json).to.deep.equal([
      { Type: 'Images', TotalCount: 2, Active: 1, Size: 1500, Reclaimable: 300 },
      { Type: 'Containers', TotalCount: 1, Active: 0, Size: 2500, Reclaimable: 2500 },
      { Type: 'Local Volumes', TotalCount: 0, Active: 0, Size: 0, Reclaimable: 0 },
      { Type: 'Build Cache', TotalCount: 0, Active: 0, Size: 0, Reclaimable: 0 },
    ]);
    const items = cli('--format', 'json', '-v').trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(items[1].Items[0]).to.include({ name: 'app', sizeRw: 2500, sizeRootFs: 3700 });
  });
});
