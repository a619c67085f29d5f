import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';

import { chainId, sha256 } from '../../lib/store/digest.js';
import { Store } from '../../lib/store/store.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { tarOf, writeTree } from '../support/trees.js';

const here = import.meta.dirname;

describe('layer store', function () {
  const cleanups = new Cleanups();
  let root: string;
  let work: string;
  let store: Store;

  before(function () {
    if (!isRoot) this.skip();
  });

  beforeEach(async function () {
    root = await tmpfsDir(cleanups);
    work = scratchDir(cleanups, 'work');
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
  });
  afterEach(() => cleanups.release());

  function archive(name: string, files: Record<string, string>, extra: string[] = []): string {
    const src = join(work, `${name}.src`);
    writeTree(src, files);
    return tarOf(src, join(work, `${name}.tar`), extra);
  }

  const fileDigest = (file: string) => sha256(readFileSync(file));
  const layerDirs = () => readdirSync(join(root, 'overlay2'));

  it('lays out the root like /var/lib/docker', function () {
    for (const dir of ['overlay2', 'image', 'containers', 'volumes']) expect(existsSync(join(root, dir)), dir).to.equal(true);
    expect(existsSync(join(root, 'image', 'metadata.db'))).to.equal(true);
  });

  it('imports a base layer: DiffID is the sha256 of the tar, ChainID equals DiffID', async function () {
    const tar = archive('base', { 'etc/hostname': 'strata\n', 'bin/': '' });
    const { layer, existed } = await store.layers.import(createReadStream(tar), { explicit: true });
    expect(existed).to.equal(false);
    expect(layer.diffId).to.equal(fileDigest(tar));
    expect(layer.chainId).to.equal(layer.diffId);
    expect(layer.parent).to.equal(null);
    expect(layer.size).to.equal('strata\n'.length);
    expect(readFileSync(join(root, 'overlay2', layer.cacheId, 'diff', 'etc/hostname'), 'utf8')).to.equal('strata\n');
  });

  it('computes a child ChainID as sha256(parent ChainID + " " + DiffID)', async function () {
    const base = await store.layers.import(createReadStream(archive('base', { a: '1' })), { explicit: true });
    const tar = archive('child', { b: '2' });
    const child = await store.layers.import(createReadStream(tar), { parent: base.layer.chainId });
    const diffId = fileDigest(tar);
    expect(child.layer.chainId).to.equal(sha256(`${base.layer.chainId} ${diffId}`));
    expect(child.layer.chainId).to.equal(chainId(base.layer.chainId, diffId));
    expect(store.layers.get(base.layer.chainId)!.refs).to.equal(2); // the import and the child
  });

  it('returns the existing layer for the same content, with no second copy on disk', async function () {
    const tar = archive('base', { a: '1' });
    const first = await store.layers.import(createReadStream(tar), { explicit: true });
    const second = await store.layers.import(createReadStream(tar), { explicit: true });
    expect(second.existed).to.equal(true);
    expect(second.layer).to.deep.equal(first.layer);
    expect(layerDirs()).to.deep.equal([first.layer.cacheId]);
  });

  it('skips reading an archive whose expected DiffID is already present', async function () {
    const tar = archive('base', { a: '1' });
    const first = await store.layers.import(createReadStream(tar), { explicit: true });
    const never = (async function* () {
      throw new Error('the archive was read');
    })();
    const again = await store.layers.import(never, { expectedDiffId: first.layer.diffId });
    expect(again.existed).to.equal(true);
  });

  it('reads gzip and zstd archives to the same DiffID as the plain tar', async function () {
    const tar = archive('base', { 'a/b/c': 'x'.repeat(100_000) });
    execFileSync('gzip', ['-k', tar]);
    execFileSync('zstd', ['-q', tar]);
    const gz = await store.layers.import(createReadStream(`${tar}.gz`));
    expect(gz.compression).to.equal('gzip');
    expect(gz.layer.diffId).to.equal(fileDigest(tar));
    await store.layers.remove(gz.layer.chainId);
    const zst = await store.layers.import(createReadStream(`${tar}.zst`));
    expect(zst.compression).to.equal('zstd');
    expect(zst.layer.diffId).to.equal(fileDigest(tar));
  });

  it('exports a layer as the exact bytes it was imported from', async function () {
    const tar = archive('base', { 'etc/passwd': 'root:x:0:0::/root:/bin/sh\n', 'usr/bin/': '', 'big': 'y'.repeat(3_000_000) });
    const { layer } = await store.layers.import(createReadStream(tar));
    const exported = await buffer(store.layers.export(layer.chainId));
    expect(exported.equals(readFileSync(tar))).to.equal(true);
    expect(sha256(exported)).to.equal(layer.diffId);
  });

  it('records SHA-256 checkpoints, and exports a layer stored before them (no checkpoints, tar-split gzipped)', async function () {
    const tar = archive('base', { big: 'z'.repeat(9_000_000), small: 's' });
    const { layer } = await store.layers.import(createReadStream(tar));
    const row = () => store.db.prepare('SELECT sha256_checkpoints FROM layers WHERE chain_id = ?').get(layer.chainId) as { sha256_checkpoints: Buffer | null };
    expect((row().sha256_checkpoints!.length - 4) / 32).to.equal(2);
    expect((await buffer(store.layers.export(layer.chainId))).equals(readFileSync(tar))).to.equal(true);
    // As rows written before: no checkpoints, and the tar-split gzipped once more.
    const { tar_split: split } = store.db.prepare('SELECT tar_split FROM layers WHERE chain_id = ?').get(layer.chainId) as { tar_split: Buffer };
    store.db.prepare('UPDATE layers SET sha256_checkpoints = NULL, tar_split = ? WHERE chain_id = ?').run(gzipSync(split), layer.chainId);
    expect((await buffer(store.layers.export(layer.chainId))).equals(readFileSync(tar))).to.equal(true);
  });

  it('rejects a DiffID mismatch and registers nothing', async function () {
    const tar = archive('base', { a: '1' });
    const wrong = sha256('something else');
    const error = await store.layers.import(createReadStream(tar), { expectedDiffId: wrong }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.include(wrong);
    expect(store.layers.list()).to.deep.equal([]);
    expect(layerDirs()).to.deep.equal([]);
  });

  it('rejects a truncated archive, naming the problem, and leaves nothing behind', async function () {
    const tar = archive('base', { a: 'z'.repeat(50_000) });
    const cut = readFileSync(tar).subarray(0, 20_000);
    const error = await store.layers.import(Readable.from([cut])).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.match(/the stream ends inside/);
    expect(store.layers.list()).to.deep.equal([]);
    expect(layerDirs()).to.deep.equal([]);
    expect(store.db.prepare('SELECT count(*) AS n FROM staging').get()).to.deep.equal({ n: 0 });
  });

  it('stages a child on overlay2 before its parent is registered, and registers it only on a registered parent', async function () {
    expect(store.layers.stacksLayers).to.equal(true);
    const baseTar = archive('base', { a: '1' });
    const childTar = archive('child', { b: '2' });
    const baseDiff = fileDigest(baseTar);
    const child = await store.layers.stage(createReadStream(childTar), baseDiff);
    const base = await store.layers.stage(createReadStream(baseTar), null);
    expect(store.layers.list()).to.deep.equal([]);
    // Staged, so the next open would remove both if this process died.
    expect(store.db.prepare('SELECT count(*) AS n FROM staging').get()).to.deep.equal({ n: 2 });
    const early = await store.layers.registerStaged(child).catch((e: unknown) => e);
    expect((early as { code?: string }).code).to.equal('ERR_LAYER_UNKNOWN');
    expect(store.layers.list()).to.deep.equal([]);

    await store.layers.registerStaged(base, { explicit: true });
    const { layer, hold } = await store.layers.registerStaged(child, { hold: true });
    expect(layer.chainId).to.equal(chainId(baseDiff, fileDigest(childTar)));
    expect(layer.parent).to.equal(baseDiff);
    expect(hold).to.be.a('number');
    expect(readFileSync(join(root, 'overlay2', layer.cacheId, 'diff', 'b'), 'utf8')).to.equal('2');
    expect(store.db.prepare('SELECT count(*) AS n FROM staging').get()).to.deep.equal({ n: 0 });

    // The same layer staged again is discarded when registered: the first copy stays.
    const again = await store.layers.stage(createReadStream(childTar), baseDiff);
    expect((await store.layers.registerStaged(again)).existed).to.equal(true);
    expect(layerDirs()).to.have.length(2);
    const unused = await store.layers.stage(createReadStream(archive('unused', { c: '3' })), null);
    await store.layers.discardStagedLayer(unused);
    expect(layerDirs()).to.have.length(2);
    expect(store.db.prepare('SELECT count(*) AS n FROM staging').get()).to.deep.equal({ n: 0 });
  });

  it('refuses to remove a layer in use, then frees each layer once unused', async function () {
    const base = await store.layers.import(createReadStream(archive('base', { a: '1' })), { explicit: true });
    const child = await store.layers.import(createReadStream(archive('child', { b: '2' })), {
      parent: base.layer.chainId,
      explicit: true,
    });
    const error = await store.layers.remove(base.layer.chainId).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_LAYER_IN_USE' });
    expect((error as Error).message).to.include('child layer');
    const removed = await store.layers.remove(child.layer.chainId);
    expect(removed.map((l) => l.chainId)).to.deep.equal([child.layer.chainId]);
    expect(store.layers.get(base.layer.chainId)!.refs).to.equal(1);
    await store.layers.remove(base.layer.chainId);
    expect(store.layers.list()).to.deep.equal([]);
    expect(layerDirs()).to.deep.equal([]);
  });

  it('removes parents that only their child held', async function () {
    const tarA = archive('a', { a: '1' });
    const base = await store.layers.import(createReadStream(tarA));
    const child = await store.layers.import(createReadStream(archive('b', { b: '2' })), { parent: base.layer.chainId, explicit: true });
    const removed = await store.layers.remove(child.layer.chainId);
    expect(removed.map((l) => l.chainId)).to.deep.equal([child.layer.chainId, base.layer.chainId]);
    expect(layerDirs()).to.deep.equal([]);
  });

  it('resolves unique id prefixes and reports unknown ones clearly', async function () {
    const { layer } = await store.layers.import(createReadStream(archive('base', { a: '1' })));
    expect(store.layers.resolve(layer.chainId.slice(7, 19)).chainId).to.equal(layer.chainId);
    expect(() => store.layers.resolve('ffff')).to.throw(/no such layer: ffff/);
    expect(() => store.layers.resolve('../etc')).to.throw(/not a layer id/);
  });

  describe('across processes', function () {
    const child = join(here, '../support/import-child.ts');

    function runChild(args: string[]) {
      return spawn(process.execPath, ['--import', 'tsx', child, root, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    }

    it('removes the leftovers of a process killed mid-import on the next open', async function () {
      const tar = archive('big', { big: 'q'.repeat(4_000_000) });
      store.close();
      const proc = runChild(['-']);
      proc.stdin.on('error', () => {}); // EPIPE once the child is killed mid-write
      const data = readFileSync(tar);
      proc.stdin.write(data.subarray(0, 2_000_000));
      // Wait until the child has a staging directory with data in it.
      const stagingDir = await waitFor(() => {
        const dirs = existsSync(join(root, 'overlay2')) ? readdirSync(join(root, 'overlay2')) : [];
        const dir = dirs[0] && join(root, 'overlay2', dirs[0], 'diff', 'big');
        return dir && existsSync(dir) ? dir : undefined;
      });
      expect(stagingDir).to.be.a('string');
      proc.kill('SIGKILL');
      await new Promise((resolve) => proc.once('close', resolve));

      store = await Store.open({ root });
      expect(store.recovered).to.have.length(1);
      expect(store.layers.list()).to.deep.equal([]);
      expect(layerDirs()).to.deep.equal([]);
    });

    it('registers one layer when two processes import the same archive at once', async function () {
      const tar = archive('same', { f: 'r'.repeat(2_000_000) });
      const outputs = await Promise.all(
        [0, 1].map(async () => {
          const proc = runChild([tar]);
          proc.stdin.end();
          const [out] = await Promise.all([text(proc.stdout), new Promise((resolve) => proc.once('close', resolve))]);
          return out.trim();
        }),
      );
      expect(outputs[0]).to.equal(outputs[1]);
      expect(outputs[0]).to.equal(fileDigest(tar));
      expect(store.layers.list()).to.have.length(1);
      expect(layerDirs()).to.have.length(1);
    });
  });
});

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 20_000): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined || Date.now() > end) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

