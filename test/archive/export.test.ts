// exportLayerArchive: errors naming the file when the directory changed, and
// checks of its arguments and of the tar-split.
import { expect } from 'chai';
import { rmSync, truncateSync, unlinkSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

import { exportLayerArchive } from '../../lib/archive/export.js';
import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { applyBuffer, buildTar, exportBuffer } from '../support/tar-builder.js';

describe('exportLayerArchive', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  async function applied() {
    const dir = scratchDir(cleanups);
    const tar = buildTar([
      { name: 'd/', type: '5' },
      { name: 'd/a', data: 'a'.repeat(5000) },
      { name: 'd/b', data: 'b'.repeat(3000) },
      { name: 'empty', data: '' },
    ]);
    const result = await applyBuffer(tar, dir);
    return { dir, tar, result };
  }

  async function exportFails(dir: string, split: Buffer, diffId: string, code: string, entry?: string): Promise<Error> {
    const error = await exportBuffer(dir, split, diffId).then(
      () => expect.fail('the export succeeded'),
      (e: unknown) => e as Error,
    );
    expect(error).to.include({ name: 'ArchiveError', code });
    if (entry) expect(error).to.have.property('entry', entry);
    return error;
  }

  it('rebuilds the tar in chunks', async function () {
    const { dir, tar, result } = await applied();
    expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);
  });

  it('names a file whose content changed, even at the same size', async function () {
    const { dir, result } = await applied();
    writeFileSync(join(dir, 'd/b'), 'c'.repeat(3000));
    const error = await exportFails(dir, result.tarSplit, result.diffId, 'ERR_LAYER_CONTENT_CHANGED', 'd/b');
    expect(error.message).to.equal("layer content changed on disk: 'd/b' has different content");
  });

  it('names a file that was resized, removed or replaced by a symlink', async function () {
    const { dir, result } = await applied();
    truncateSync(join(dir, 'd/a'), 10);
    expect((await exportFails(dir, result.tarSplit, result.diffId, 'ERR_LAYER_CONTENT_CHANGED', 'd/a')).message)
      .to.include('has a different size');
    unlinkSync(join(dir, 'd/a'));
    expect((await exportFails(dir, result.tarSplit, result.diffId, 'ERR_LAYER_CONTENT_CHANGED', 'd/a')).message)
      .to.include('is missing');
    symlinkSync('b', join(dir, 'd/a'));
    await exportFails(dir, result.tarSplit, result.diffId, 'ERR_LAYER_CONTENT_CHANGED', 'd/a');
  });

  it('fails when the rebuilt tar does not match the DiffID', async function () {
    const { dir, result } = await applied();
    await exportFails(dir, result.tarSplit, `sha256:${'1'.repeat(64)}`, 'ERR_LAYER_CONTENT_CHANGED');
  });

  it('reads tar-splits written with checksum version 1 (STSPLIT1), and still names a changed file', async function () {
    // Applied and split by the version before checksum version 2; the tar is rebuilt the same way here.
    const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff));
    const tar = buildTar([
      { name: 'etc/', type: '5', mode: 0o755 },
      { name: 'etc/empty', data: '' },
      { name: 'etc/short', data: 'hello' },
      { name: 'etc/hundred', data: pattern(100) },
      { name: 'big', data: pattern(70000) },
    ]);
    const splitV1 = Buffer.from(
      'Cw4JDvDxDDFkZEktSdZnSWC0NDAwMDA3NWUA0QYGBug0WMzQxNTIxNzcwAQkb2hgYGTEoGDKksLIUVpckljEYGDA4sDID9EPN4Bl' +
      'BSMjJ8iS1NyCkkqWaIhNZiYm6DbA+FhsMjQwN2RQMCDWpuKM/KIS4mwyZUD1k6GBuTlRNjGB/QS2iTXjw6qw/4Fn1Vl+MzNyg7ya' +
      'UZqXUpSawhJJ2LOGJiboTjA2NyXOCch2pazev/flwuCCUyxzmBmZkzLTWRIJWG5kaGBqZoBquYG5uTGR/gfZ8WERi8xlk8kdzRpR' +
      'LBM4GQA=',
      'base64',
    );
    const diffId = 'sha256:67112f1ce3f2f95b065c9436a8b6cdccf9a91c9f5e271ec0ddc53300222270a1';
    expect(inflateRawSync(splitV1).subarray(0, 8).toString()).to.equal('STSPLIT1');
    const dir = scratchDir(cleanups);
    const result = await applyBuffer(tar, dir);
    expect(result.diffId).to.equal(diffId);
    expect(inflateRawSync(result.tarSplit).subarray(0, 8).toString()).to.equal('STSPLIT2');
    expect(await exportBuffer(dir, splitV1, diffId)).to.deep.equal(tar);
    writeFileSync(join(dir, 'big'), pattern(70000).reverse());
    await exportFails(dir, splitV1, diffId, 'ERR_LAYER_CONTENT_CHANGED', 'big');
  });

  it('rejects a corrupt tar-split', async function () {
    const { dir, result } = await applied();
    const raw = inflateRawSync(result.tarSplit);
    const cases = [
      Buffer.from('not deflated at all'),
      deflateRawSync(Buffer.from('WRONGMAG')),
      deflateRawSync(raw.subarray(0, raw.length - 1)),
      deflateRawSync(Buffer.concat([raw, Buffer.from([0])])),
      deflateRawSync(Buffer.concat([Buffer.from('STSPLIT1'), Buffer.from([1, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0])])),
      deflateRawSync(Buffer.concat([Buffer.from('STSPLIT1'), Buffer.from([2, 1, 0x2f, 1]), Buffer.alloc(8), Buffer.from([0])])),
      deflateRawSync(Buffer.concat([Buffer.from('STSPLIT1'), Buffer.from([9, 0])])),
    ];
    for (const split of cases) await exportFails(dir, split, result.diffId, 'ERR_ARCHIVE_SPLIT_CORRUPT');
  });

  it('fails on a missing directory and checks its arguments', async function () {
    const { dir, result } = await applied();
    rmSync(dir, { recursive: true });
    const error = await exportBuffer(dir, result.tarSplit, result.diffId).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ENOENT', syscall: 'open', path: dir });
    expect(() => exportLayerArchive(dir, result.tarSplit, 'sha256:xyz')).to.throw(TypeError);
  });
});
