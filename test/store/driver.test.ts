import { expect } from 'chai';

import { Store } from '../../lib/store/store.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, tmpfsDir } from '../support/fixtures.js';
import { fsImage } from '../support/images.js';

describe('overlay2 start-up checks', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  it('reports its status as docker info does', async function () {
    const root = await tmpfsDir(cleanups);
    const store = await Store.open({ root });
    cleanups.defer(() => store.close());
    expect(store.driver.name).to.equal('overlay2');
    expect(Object.fromEntries(store.driverStatus)).to.include({
      'Backing Filesystem': 'tmpfs',
      'Supports d_type': 'true',
      'Native Overlay Diff': 'true',
      index: 'off',
    });
  });

  it('refuses a backing filesystem without d_type, saying how to fix it', async function () {
    const mnt = await fsImage(cleanups, 'ext4', { mkfsArgs: ['-O', '^filetype'] });
    const error = await Store.open({ root: `${mnt}/store` }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_DRIVER_UNSUPPORTED' });
    expect((error as Error).message).to.match(/backing ext4 filesystem is formatted without d_type support.*-O filetype/);
  });

  it('keeps the driver a root was first used with', async function () {
    const root = await tmpfsDir(cleanups);
    (await Store.open({ root })).close();
    const error = await Store.open({ root, driver: 'vfs' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_DRIVER_UNSUPPORTED' });
  });

  it('shows the store and host in strata info', async function () {
    const root = await tmpfsDir(cleanups);
    const before = strata(['--root', root, 'info']);
    expect(before.stdout).to.include('Storage Driver: none yet');
    (await Store.open({ root })).close();
    const after = strata(['--root', root, 'info']);
    expect(after.code).to.equal(0);
    expect(after.stdout).to.match(/^Storage Driver: overlay2\n Backing Filesystem: tmpfs\n Supports d_type: true/m);
    const json = JSON.parse(strata(['--root', root, 'info', '--format', 'json']).stdout);
    expect(json.storageDriver.name).to.equal('overlay2');
    expect(json.drivers.find((d: { name: string }) => d.name === 'aufs')).to.include({ available: false });
    expect(json.overlay.maxLowers).to.equal(500);
  });
});
