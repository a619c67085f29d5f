// fsck on devicemapper, in the UML guest (the host has no device-mapper):
// its mounted layer devices, pool devices and loop devices are the store's,
// not leaks; a thin id no layer owns and an active device without a thin id
// are found and removed.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { Readable } from 'node:stream';

import { createDevice, listDevices, loadTable, resumeDevice } from '../../lib/native/dm.js';
import { checkStore, type Finding } from '../../lib/store/fsck.js';
import { Store } from '../../lib/store/store.js';
import { Cleanups, isRoot, requireFeature, tmpfsDir } from '../support/fixtures.js';
import { buildTar } from '../support/tar-builder.js';
import { inVm } from '../support/vm.js';

const SMALL = { 'dm.basesize': '256M', 'dm.loopdatasize': '2G', 'dm.loopmetadatasize': '64M' };

const summary = (findings: Finding[]) => findings.map((f) => `${f.kind} ${f.object} ${f.repaired ? 'repaired' : 'left'}`);

describe('fsck on devicemapper (in the VM)', function () {
  const cleanups = new Cleanups();
  let store: Store;

  before(function () {
    if (!isRoot) this.skip();
    requireFeature(this, inVm || existsSync('/dev/mapper/control'), 'no device-mapper: run npm run test:vm');
  });

  beforeEach(async function () {
    const root = await tmpfsDir(cleanups, '1g');
    store = await Store.open({ root, driver: 'devicemapper', driverOptions: SMALL });
    cleanups.defer(() => store.shutdown());
  });
  afterEach(() => cleanups.release());

  const prefix = () => store.driverStatus.find(([key]) => key === 'Pool Name')![1].replace(/-pool$/, '');

  it('takes the pool, its loop devices and the mounted layer devices for the store, and removes leaked devices', async function () {
    const { layer } = await store.layers.import(Readable.from([buildTar([{ name: 'a', data: 'a' }])]), { explicit: true });
    const container = await store.containers.create(layer.chainId);
    await store.containers.mount(container.id);
    expect(summary(await checkStore(store))).to.deep.equal([]);
    await store.containers.unmount(container.id);
    expect(summary(await checkStore(store))).to.deep.equal([]);

    // A thin id recorded for work that never committed, and an active device the metadata does not know.
    store.db.prepare("INSERT INTO dm_devices (key, thin_id) VALUES ('leaked', 900)").run();
    const stray = `${prefix()}-stray`;
    await createDevice(stray);
    await loadTable(stray, [{ start: 0, length: 8, type: 'zero', params: '' }]);
    await resumeDevice(stray);
    expect(summary(await checkStore(store, { repair: true }))).to.have.members([`leaked-device leaked repaired`, `leaked-device ${stray} repaired`]);
    expect(summary(await checkStore(store))).to.deep.equal([]);
    expect((await listDevices()).map((d) => d.name)).to.not.include(stray);
    expect(store.db.prepare("SELECT 1 FROM dm_devices WHERE key = 'leaked'").get()).to.equal(undefined);
  });
});
