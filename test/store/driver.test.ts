import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { Store } from '../../lib/store/store.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
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
    const error = await Store.open({ root: `${mnt}/store`, driver: 'overlay2' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_DRIVER_UNSUPPORTED' });
    expect((error as Error).message).to.match(/backing ext4 filesystem is formatted without d_type support.*-O filetype/);
    // Left to choose, the store falls back as Docker does: btrfs cannot run on ext4, vfs can.
    const store = await Store.open({ root: `${mnt}/store` });
    expect(store.driver.name).to.equal('vfs');
    store.close();
  });

  it('keeps the driver a root was first used with once it holds layers', async function () {
    const root = await tmpfsDir(cleanups);
    const store = await Store.open({ root });
    await store.layers.import(Readable.from([Buffer.alloc(1024)]), { explicit: true });
    store.close();
    const reopened = await Store.open({ root });
    expect(reopened.driver.name).to.equal('overlay2');
    reopened.close();
    const error = await Store.open({ root, driver: 'vfs' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_DRIVER_MISMATCH' });
  });

  it('picks the first driver that works here, in Docker\'s order', async function () {
    const btrfs = await fsImage(cleanups, 'btrfs');
    const store = await Store.open({ root: `${btrfs}/store` });
    expect(store.driver.name, 'a root on btrfs gets btrfs').to.equal('btrfs');
    store.close();
    const tmp = await tmpfsDir(cleanups);
    const error = await Store.open({ root: tmp, driver: 'btrfs' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_DRIVER_UNSUPPORTED' });
    expect((error as Error).message).to.equal('btrfs: the store root is on tmpfs, not btrfs');
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

describe('vfs options', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  /** Bytes a container's copy of an 8 MiB layer file took on xfs (reflink=1), with the given options. */
  async function copyCost(driverOptions: Record<string, string>): Promise<{ bytes: number; copies: string | undefined }> {
    const mnt = await fsImage(cleanups, 'xfs');
    const store = await Store.open({ root: `${mnt}/store`, driver: 'vfs', driverOptions });
    cleanups.defer(() => store.close());
    const tree = scratchDir(cleanups, 'tree');
    writeFileSync(join(tree, 'data'), Buffer.alloc(8 * 1024 * 1024, 7));
    const tar = execFileSync('tar', ['-C', tree, '-cf', '-', '.'], { maxBuffer: 1 << 26 });
    const { layer } = await store.layers.import(Readable.from([tar]), { explicit: true });
    const used = () => {
      execFileSync('sync', ['-f', mnt]);
      const s = statfsSync(mnt);
      return (s.blocks - s.bfree) * s.bsize;
    };
    const before = used();
    await store.containers.create(layer.chainId);
    return { bytes: used() - before, copies: Object.fromEntries(store.driverStatus)['Copies'] };
  }

  it('copies every byte with vfs.copy=copy, and shares extents by default on xfs', async function () {
    const full = await copyCost({ 'vfs.copy': 'copy' });
    expect(full.copies).to.equal('full (vfs.copy=copy)');
    expect(full.bytes).to.be.at.least(8 * 1024 * 1024);
    const reflinked = await copyCost({});
    expect(reflinked.copies).to.equal('reflink (extents shared)');
    expect(reflinked.bytes).to.be.below(1024 * 1024);
  });

  it('refuses an unknown option or copy mode, naming it', async function () {
    const root = await tmpfsDir(cleanups);
    for (const [options, message] of [
      [{ 'vfs.size': '1G' }, 'vfs: unknown option vfs.size (use vfs.copy)'],
      [{ 'vfs.copy': 'fast' }, 'vfs: vfs.copy=fast: use reflink or copy'],
    ] as const) {
      const error = await Store.open({ root, driver: 'vfs', driverOptions: options }).catch((e: unknown) => e);
      expect(error).to.include({ code: 'ERR_DRIVER_UNSUPPORTED', message });
    }
  });
});
