// Broken and hostile image archives: each fails with one line naming the
// problem, and leaves no image and no layer registered.
import { expect } from 'chai';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { Store } from '../../lib/store/store.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { buildTar, sha256 } from '../support/tar-builder.js';
import { config, dockerArchive, layer, ociLayout } from './archives.js';

describe('strata load with broken and hostile archives', function () {
  this.timeout(120_000);
  const cleanups = new Cleanups();
  let root: string;
  let work: string;

  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    root = await tmpfsDir(cleanups);
    work = scratchDir(cleanups, 'hostile');
  });
  afterEach(() => cleanups.release());

  const base = layer({ 'etc/motd': 'hello\n' });
  const top = layer({ 'etc/top': 'top\n' });
  const wrongTop = { tar: top.tar, diffId: sha256(Buffer.from('something else')) };

  /** Where each driver keeps its layers, as the store lays them out. */
  const layerHome = { overlay2: 'overlay2', vfs: 'vfs/dir' };

  async function expectRejected(name: string, archive: Buffer, message: RegExp, driver: keyof typeof layerHome = 'overlay2'): Promise<void> {
    const file = join(work, `${name}.tar`);
    writeFileSync(file, archive);
    const result = strata(['--root', root, '--storage-driver', driver, 'load', '-q', '-i', file]);
    expect(result.code, name).to.equal(1);
    expect(result.stderr, name).to.match(message);
    expect(result.stderr.trimEnd().split('\n'), name).to.have.length(1);
    expect(result.stdout, name).to.equal('');
    // Looked at before an open, which would remove what the load left staged.
    const home = join(root, layerHome[driver]);
    expect(existsSync(home) ? readdirSync(home).filter((n) => n !== 'l') : [], `${name}: layer dirs`).to.deep.equal([]);
    expect(existsSync(join(root, 'tmp')) ? readdirSync(join(root, 'tmp')) : [], `${name}: spool files`).to.deep.equal([]);
    const store = await Store.open({ root });
    try {
      expect(store.recovered, `${name}: left for the next open to repair`).to.deep.equal([]);
      expect(store.images.list(), `${name}: images`).to.deep.equal([]);
      expect(store.layers.list(), `${name}: layers`).to.deep.equal([]);
    } finally {
      store.close();
    }
  }

  it('rejects manifest paths that escape the archive', async function () {
    await expectRejected('config-escape', dockerArchive([base], { configPath: '../config.json' }), /config path "\.\.\/config\.json" escapes the archive/);
    await expectRejected('layer-absolute', dockerArchive([base], { layerPaths: ['/etc/passwd'] }), /layer path "\/etc\/passwd" escapes the archive/);
    await expectRejected(
      'layer-symlink-out',
      dockerArchive([base], { layerPaths: ['link/layer.tar'], extra: [{ name: 'link/layer.tar', type: '2', linkname: '../../../etc/passwd' }] }),
      /layer "link\/layer\.tar" links outside the archive/,
    );
  });

  it('rejects a layer count that disagrees with the config, and missing files', async function () {
    await expectRejected('count', dockerArchive([base], { configBytes: config([base.diffId, top.diffId]) }), /lists 1 layer\(s\) but its config has 2 DiffIDs/);
    await expectRejected('missing-layer', dockerArchive([base], { omit: [`0${'0'.repeat(63)}/layer.tar`] }), /layer "0{64}\/layer\.tar" is missing from the archive/);
    await expectRejected('missing-blob', dockerArchive([base, top], { form: 'blobs', omit: [`blobs/sha256/${top.diffId.slice(7)}`] }), /is missing from the archive/);
    await expectRejected('no-manifest', buildTar([{ name: 'hello', data: 'x' }]), /neither manifest\.json nor index\.json/);
  });

  it('rejects wrong digests, rolling back layers already imported', async function () {
    // The first layer imports fine; the second fails its DiffID check.
    await expectRejected('diffid', dockerArchive([base, wrongTop]), /layer tar has digest sha256:[0-9a-f]{64}, expected sha256:/);
    const misnamed = dockerArchive([base, top], {
      form: 'blobs',
      layerPaths: [`blobs/sha256/${base.diffId.slice(7)}`, `blobs/sha256/${'e'.repeat(64)}`],
      extra: [{ name: `blobs/sha256/${'e'.repeat(64)}`, data: top.tar }],
    });
    await expectRejected('blob-name', misnamed, /layer blob blobs\/sha256\/e{64} has digest sha256:[0-9a-f]{64}, not the one its name gives/);
    const configBytes = config([base.diffId]);
    await expectRejected('config-name', dockerArchive([base], { configBytes, configPath: `${'a'.repeat(64)}.json` }), /config a{64}\.json has digest .* not the one its name gives/);
    const oci = ociLayout([{ blob: base.tar, diffId: base.diffId }], { corrupt: base.diffId });
    await expectRejected('oci-blob', oci, /invalid DiffID|layer tar has digest|has digest/);
  });

  it('rejects a bad layer among several, leaving none of the layers applied beside or before it', async function () {
    // overlay2 applies the next layer while one is synced and registered; vfs copies the parent, one layer at a time.
    const layers = [0, 1, 2, 3].map((i) => layer({ [`layer${i}/file`]: `${i}\n`.repeat(1000) }));
    for (const driver of ['overlay2', 'vfs'] as const) {
      for (const bad of [0, 1, 3]) {
        const broken = layers.map((l, i) => (i === bad ? { tar: l.tar, diffId: sha256(Buffer.from(`not layer ${i}`)) } : l));
        await expectRejected(`${driver}-bad-${bad}`, dockerArchive(broken), /layer tar has digest sha256:[0-9a-f]{64}, expected sha256:/, driver);
      }
      // A bad layer after one already present: the present one is kept, nothing else is.
      const store = await Store.open({ root, driver });
      try {
        await store.layers.import(Readable.from([layers[0]!.tar]), { explicit: true });
      } finally {
        store.close();
      }
      const broken = layers.map((l, i) => (i === 2 ? { tar: l.tar, diffId: sha256(Buffer.from('not layer 2')) } : l));
      const file = join(work, `${driver}-after-present.tar`);
      writeFileSync(file, dockerArchive(broken));
      expect(strata(['--root', root, '--storage-driver', driver, 'load', '-q', '-i', file]).stderr).to.match(/layer tar has digest/);
      const after = await Store.open({ root, driver });
      try {
        expect(after.layers.list().map((l) => l.chainId)).to.deep.equal([layers[0]!.diffId]);
        expect(readdirSync(join(root, layerHome[driver])).filter((n) => n !== 'l')).to.have.length(1);
        expect(after.layers.get(layers[0]!.diffId as `sha256:${string}`)!.refs).to.equal(1);
        await after.layers.remove(layers[0]!.diffId as `sha256:${string}`);
      } finally {
        after.close();
      }
      root = await tmpfsDir(cleanups); // the next driver on a fresh root: a store keeps its first driver
    }
  });

  it('rejects truncated archives and ones that are not tar files', async function () {
    const whole = dockerArchive([base, top]);
    await expectRejected('truncated', whole.subarray(0, 1536), /the archive is truncated/);
    await expectRejected('garbage', Buffer.alloc(4096, 7), /not a tar file or is corrupt/);
  });

  it('rejects malformed and huge JSON', async function () {
    await expectRejected('manifest-json', dockerArchive([base], { manifest: '[{"Config": ' }), /manifest\.json is not valid JSON/);
    await expectRejected('manifest-shape', dockerArchive([base], { manifest: '{"a":1}' }), /manifest\.json is not a non-empty list of images/);
    await expectRejected('manifest-huge', dockerArchive([base], { manifest: `[${' '.repeat(9 << 20)}]` }), /manifest\.json is \d+ bytes, more than the \d+ allowed/);
    await expectRejected('config-json', dockerArchive([base], { configBytes: Buffer.from('{"rootfs": nope') }), /config .* is not valid JSON/);
    await expectRejected('config-rootfs', dockerArchive([base], { configBytes: Buffer.from('{"rootfs": {"type": "layers"}}') }), /has no rootfs of type "layers"/);
    await expectRejected('config-diffid', dockerArchive([base], { configBytes: config(['sha256:nope']) }), /lists an invalid DiffID "sha256:nope"/);
    await expectRejected('bad-tag', dockerArchive([base], { tags: ['UPPER:case'] }), /invalid reference format "UPPER:case"/);
  });

  it('chooses the linux/amd64 image of a nested OCI index', function () {
    const plain = ociLayout([{ blob: base.tar, diffId: base.diffId }], { multiPlatform: true });
    const file = join(work, 'multi.tar');
    writeFileSync(file, plain);
    // The amd64 entry is chosen from the nested index.
    expect(strata(['--root', root, 'load', '-i', file]).stdout).to.match(/^Loaded image ID: sha256:[0-9a-f]{64}\n$/);
  });
});
