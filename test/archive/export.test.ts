// exportLayerArchive: errors naming the file when the directory changed, and
// checks of its arguments and of the tar-split.
import { expect } from 'chai';
import { closeSync, openSync, rmSync, truncateSync, unlinkSync, writeFileSync, writeSync, symlinkSync } from 'node:fs';
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

  describe('with the SHA-256 checkpoints recorded at import', function () {
    const MiB = 1 << 20;
    const pattern = (n: number, seed: number) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i += 4) out.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, i);
      return out;
    };

    async function appliedLarge(sizes: number[]) {
      const dir = scratchDir(cleanups);
      const tar = buildTar(sizes.map((size, i) => ({ name: `f${i}`, data: pattern(size, i) })));
      return { dir, tar, result: await applyBuffer(tar, dir) };
    }

    it('records the state after every 4 MiB inside the stream, and rebuilds the tar with or without them', async function () {
      const { dir, tar, result } = await appliedLarge([4.5 * MiB, 4.5 * MiB, 4.5 * MiB]);
      expect(result.checkpoints.readUInt32LE(0)).to.equal(4 * MiB);
      expect((result.checkpoints.length - 4) / 32).to.equal(Math.ceil(tar.length / (4 * MiB)) - 1);
      expect(await exportBuffer(dir, result.tarSplit, result.diffId, result.checkpoints)).to.deep.equal(tar);
      expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);
    });

    it('records the same checkpoints when the applier hashes (index mode, a commit in place)', async function () {
      const { dir, tar, result } = await appliedLarge([4.5 * MiB, 4.5 * MiB]);
      const indexed = await applyBuffer(tar, dir, { whiteouts: 'index' });
      expect(indexed.diffId).to.equal(result.diffId);
      expect(indexed.checkpoints).to.deep.equal(result.checkpoints);
    });

    it('handles a tar that ends exactly at a checkpoint interval, and one within the first', async function () {
      // Header, data and two end blocks: 8 MiB in all.
      const exact = await appliedLarge([8 * MiB - 3 * 512]);
      expect(exact.tar.length).to.equal(8 * MiB);
      expect((exact.result.checkpoints.length - 4) / 32).to.equal(1);
      expect(await exportBuffer(exact.dir, exact.result.tarSplit, exact.result.diffId, exact.result.checkpoints)).to.deep.equal(exact.tar);
      const { dir, tar, result } = await applied();
      expect(result.checkpoints.length).to.equal(4);
      expect(await exportBuffer(dir, result.tarSplit, result.diffId, result.checkpoints)).to.deep.equal(tar);
    });

    it('stops at the first segment whose hash does not reach the next checkpoint, before handing it on', async function () {
      const { dir, result } = await appliedLarge([4.5 * MiB, 4.5 * MiB, 4.5 * MiB]);
      const tampered = Buffer.from(result.checkpoints);
      tampered[4 + 32 + 5]! ^= 1; // the state at 8 MiB
      let received = 0;
      const error = await (async () => {
        for await (const chunk of exportLayerArchive(dir, result.tarSplit, result.diffId, tampered)) received += (chunk as Buffer).length;
      })().then(
        () => expect.fail('the export succeeded'),
        (e: unknown) => e as Error,
      );
      expect(error).to.include({ code: 'ERR_LAYER_CONTENT_CHANGED' });
      expect(error.message).to.equal(
        `rebuilt layer tar differs from the imported tar between bytes ${4 * MiB} and ${8 * MiB}: the layer directory or its tar-split changed`,
      );
      expect(received).to.equal(4 * MiB);
    });

    it('names a changed file that spans segments, with or without checkpoints', async function () {
      const { dir, result } = await appliedLarge([4.5 * MiB, 4.5 * MiB, 4.5 * MiB]);
      const fd = openSync(join(dir, 'f1'), 'r+');
      writeSync(fd, Buffer.from('changed'), 0, 7, 2 * MiB);
      closeSync(fd);
      for (const checkpoints of [result.checkpoints, undefined]) {
        const error = await exportBuffer(dir, result.tarSplit, result.diffId, checkpoints).then(
          () => expect.fail('the export succeeded'),
          (e: unknown) => e as Error,
        );
        expect(error).to.include({ code: 'ERR_LAYER_CONTENT_CHANGED', entry: 'f1' });
        expect(error.message).to.equal("layer content changed on disk: 'f1' has different content");
      }
    });

    it('still checks the whole stream against the DiffID, and hashes in sequence with unreadable checkpoints', async function () {
      const { dir, tar, result } = await appliedLarge([4.5 * MiB, 4.5 * MiB]);
      await exportBuffer(dir, result.tarSplit, `sha256:${'1'.repeat(64)}`, result.checkpoints).then(
        () => expect.fail('the export succeeded'),
        (e: unknown) => expect(e).to.include({ code: 'ERR_LAYER_CONTENT_CHANGED' }),
      );
      for (const garbage of [Buffer.alloc(3), Buffer.alloc(40), Buffer.from([1, 0, 0, 0]), Buffer.from([0, 0, 0, 8])]) {
        expect(await exportBuffer(dir, result.tarSplit, result.diffId, garbage)).to.deep.equal(tar);
      }
    });
  });

  it('fails on a missing directory and checks its arguments', async function () {
    const { dir, result } = await applied();
    rmSync(dir, { recursive: true });
    const error = await exportBuffer(dir, result.tarSplit, result.diffId).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ENOENT', syscall: 'open', path: dir });
    expect(() => exportLayerArchive(dir, result.tarSplit, 'sha256:xyz')).to.throw(TypeError);
  });
});
