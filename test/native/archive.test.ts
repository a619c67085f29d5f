// The native tar applier and exporter directly: parser state across arbitrary
// chunk boundaries, one call in flight, argument validation, errno errors.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { TarApplier, TarExporter } from '../../lib/native/archive.js';
import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { buildTar } from '../support/tar-builder.js';

describe('native tar applier and exporter', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  const tar = buildTar([
    { name: 'dir/', type: '5', mode: 0o750 },
    { name: 'dir/file', data: 'z'.repeat(3000), mode: 0o640 },
    // trusted.*, not user.*: tmpfs (the VM's /tmp, Linux 6.1) takes user.* only since 6.6.
    { name: 'x', pax: { path: 'pax/named/file', 'SCHILY.xattr.trusted.k': 'v' }, data: 'pax data' },
    { name: '././@LongLink', type: 'L', data: `${'long/'.repeat(30)}name\0` },
    { name: 'ignored', data: 'long' },
  ]);

  for (const size of [1, 7, 511, 512, 513, 4096]) {
    it(`parses the same archive fed in ${size}-byte chunks`, async function () {
      const dir = scratchDir(cleanups);
      const applier = new TarApplier(dir, 'overlay');
      for (let at = 0; at < tar.length; at += size) await applier.write(tar.subarray(at, at + size));
      const stats = await applier.finish();
      expect(stats).to.include({ entries: 4, contentSize: 3000 + 8 + 4 });
      expect(readFileSync(join(dir, 'dir/file'), 'utf8')).to.equal('z'.repeat(3000));
      expect(readFileSync(join(dir, 'pax/named/file'), 'utf8')).to.equal('pax data');
      expect(readFileSync(join(dir, `${'long/'.repeat(30)}name`), 'utf8')).to.equal('long');
      const exporter = new TarExporter(dir, stats.tarSplit);
      expect(exporter.size).to.equal(tar.length);
      // Read in ranges of the same size, all at once.
      const ranges: Array<Promise<Buffer>> = [];
      for (let at = 0; at < exporter.size; at += size) ranges.push(exporter.read(at, Math.min(size, exporter.size - at)));
      expect(Buffer.concat(await Promise.all(ranges))).to.deep.equal(tar);
    });
  }

  it('hashes ranges as it reads them; checks sizes as it reads and content when asked', async function () {
    const dir = scratchDir(cleanups);
    const applier = new TarApplier(dir, 'overlay');
    await applier.write(tar);
    const stats = await applier.finish();
    const exporter = new TarExporter(dir, stats.tarSplit);
    const whole = await exporter.readHashed(0, exporter.size, null, true);
    expect(whole.bytes).to.deep.equal(tar);
    expect(whole.hash.toString('hex')).to.equal(createHash('sha256').update(tar).digest('hex'));
    const head = await exporter.readHashed(0, 1024, null, false);
    const tail = await exporter.readHashed(1024, exporter.size - 1024, head.hash, true);
    expect(tail.hash).to.deep.equal(whole.hash);

    // dir/file's 3000 bytes start at 1024. Reads check sizes only; checkRange
    // checks the content of every file in the range, even one it cuts.
    writeFileSync(join(dir, 'dir/file'), 'y'.repeat(3000));
    expect((await exporter.read(1024, 3072)).toString()).to.equal('y'.repeat(3000) + '\0'.repeat(72));
    expect(await exporter.checkRange(1024, 1024).catch((e: unknown) => e)).to.include({ code: 'ERR_LAYER_CONTENT_CHANGED', entry: 'dir/file' });
    writeFileSync(join(dir, 'dir/file'), 'y'.repeat(3001));
    expect(await exporter.read(1024, 1024).catch((e: unknown) => e)).to.include({ code: 'ERR_LAYER_CONTENT_CHANGED', entry: 'dir/file' });
    await exporter.checkRange(0, 1024);
    exporter.close();
  });

  it('applies an array of chunks in order', async function () {
    const dir = scratchDir(cleanups);
    const applier = new TarApplier(dir, 'overlay');
    const pieces: Buffer[] = [];
    for (let at = 0; at < tar.length; at += 700) pieces.push(tar.subarray(at, at + 700));
    await applier.write(pieces.slice(0, 3));
    await applier.write(pieces.slice(3));
    expect((await applier.finish()).entries).to.equal(4);
    expect(readFileSync(join(dir, 'dir/file'), 'utf8')).to.equal('z'.repeat(3000));
  });

  it('refuses a second call while one is running, and writes after a failure', async function () {
    const dir = scratchDir(cleanups);
    const applier = new TarApplier(dir, 'remove');
    const first = applier.write(tar);
    expect(() => applier.write(tar)).to.throw().with.property('code', 'ERR_ARCHIVE_BUSY');
    await first;
    const bad = Buffer.from(tar.subarray(0, 512));
    bad.writeUInt8(bad.readUInt8(0) ^ 1, 0);
    await applier.write(Buffer.alloc(0));
    const error = await new TarApplier(scratchDir(cleanups), 'overlay').write(bad).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_ARCHIVE_CORRUPT' });
  });

  it('reports a failed syscall with errno, syscall and path', async function () {
    const dir = scratchDir(cleanups);
    const applier = new TarApplier(dir, 'overlay');
    const error = await applier.write(buildTar([{ name: 'l', type: '1', linkname: 'missing' }])).catch((e: unknown) => e);
    expect(error).to.include({ name: 'ArchiveError', code: 'ERR_ARCHIVE_APPLY', entry: 'l' });
    expect((error as Error).cause).to.include({ code: 'ENOENT', syscall: 'linkat', path: 'missing', dest: 'l' });
    const again = await applier.write(tar).catch((e: unknown) => e);
    expect(again).to.include({ code: 'ERR_ARCHIVE_STATE' });
    expect(() => new TarApplier(join(dir, 'nope'), 'overlay')).to.throw().with.property('code', 'ENOENT');
  });

  it('refuses to write or finish after finishing', async function () {
    const applier = new TarApplier(scratchDir(cleanups), 'overlay');
    await applier.write(tar);
    await applier.finish();
    expect(await applier.write(tar).catch((e: unknown) => e)).to.include({ code: 'ERR_ARCHIVE_STATE' });
    expect(await applier.finish().catch((e: unknown) => e)).to.include({ code: 'ERR_ARCHIVE_STATE' });
  });

  describe('file content read by the applier ({ path, size } pieces)', function () {
    // A regular file's tar part as header, content by reference, padding.
    function byReference(dir: string, name: string, data: Buffer): Array<Buffer | { path: string; size: number }> {
      writeFileSync(join(dir, name), data);
      const part = buildTar([{ name, data }], { endBlocks: 0 });
      return [part.subarray(0, 512), { path: join(dir, name), size: data.length }, part.subarray(512 + data.length)];
    }
    const big = Buffer.from(Array.from({ length: 1_500_001 }, (_, i) => (i * 13) % 251));

    it('indexes the same archive as when given the bytes', async function () {
      const dir = scratchDir(cleanups);
      const expected = new TarApplier(dir, 'index');
      await expected.write(buildTar([{ name: 'big', data: big }, { name: 'empty', data: '' }, { name: 'small', data: 'abc' }]));
      const want = await expected.finish();

      const applier = new TarApplier(dir, 'index');
      await applier.write(byReference(dir, 'big', big));
      await applier.write([...byReference(dir, 'empty', Buffer.alloc(0)), ...byReference(dir, 'small', Buffer.from('abc')), Buffer.alloc(1024)]);
      const got = await applier.finish();
      expect(got.diffId).to.equal(want.diffId);
      expect(got.checkpoints).to.deep.equal(want.checkpoints);
      expect(got.tarSplit).to.deep.equal(want.tarSplit);
      expect(got).to.include({ entries: 3, contentSize: big.length + 3 });
    });

    it('applies files it reads itself in any mode, hashing the stream when asked', async function () {
      const src = scratchDir(cleanups);
      const pieces = [...byReference(src, 'big', big), ...byReference(src, 'small', Buffer.from('abc')), Buffer.alloc(1024)];
      const whole = Buffer.concat(pieces.map((p) => (Buffer.isBuffer(p) ? p : readFileSync(p.path))));
      const dir = scratchDir(cleanups);
      const applier = new TarApplier(dir, 'overlay', { hash: true });
      await applier.write(pieces);
      const stats = await applier.finish();
      expect(stats.diffId).to.equal(`sha256:${createHash('sha256').update(whole).digest('hex')}`);
      expect(readFileSync(join(dir, 'big'))).to.deep.equal(big);
      expect(readFileSync(join(dir, 'small'), 'utf8')).to.equal('abc');
      const unhashed = new TarApplier(scratchDir(cleanups), 'overlay');
      await unhashed.write(whole);
      expect((await unhashed.finish()).diffId).to.equal(undefined);
    });

    it('fails on a file that is no longer the size its header says, or is missing', async function () {
      const dir = scratchDir(cleanups);
      for (const [name, actual] of [['shrunk', big.subarray(1)], ['grown', Buffer.concat([big, Buffer.from('x')])]] as const) {
        const pieces = byReference(dir, name, big);
        writeFileSync(join(dir, name), actual);
        const error = await new TarApplier(dir, 'index').write(pieces).catch((e: unknown) => e);
        expect(error, name).to.include({ name: 'ArchiveError', code: 'ERR_ARCHIVE_SOURCE_CHANGED', entry: name });
        expect((error as Error).message).to.equal(`entry '${name}': the file changed size while it was being archived`);
      }
      const applier = new TarApplier(dir, 'index');
      const error = await applier.write([...byReference(dir, 'gone', Buffer.from('g')).slice(0, 1), { path: join(dir, 'missing'), size: 1 }]).catch((e: unknown) => e);
      expect(error).to.include({ code: 'ERR_ARCHIVE_APPLY', entry: 'gone' });
      expect((error as Error).cause).to.include({ code: 'ENOENT', syscall: 'open' });
      expect(await applier.write([Buffer.alloc(1024)]).catch((e: unknown) => e)).to.include({ code: 'ERR_ARCHIVE_STATE' });
    });
  });

  describe('argument validation', function () {
    it('throws TypeErrors instead of crashing', async function () {
      const { native } = await import('../../lib/native/binding.js');
      const dir = scratchDir(cleanups);
      const applier = new native.TarApplier(dir, 'overlay');
      const exporter = new native.TarExporter(dir, Buffer.from('STSPLIT1\0'));
      const bad: Array<[string, () => unknown]> = [
        ['non-string dir', () => new native.TarApplier(1 as unknown as string, 'overlay')],
        ['empty dir', () => new native.TarApplier('', 'overlay')],
        ['NUL in dir', () => new native.TarApplier('/tmp/a\0b', 'overlay')],
        ['bad whiteout mode', () => new native.TarApplier(dir, 'bogus' as 'overlay')],
        ['non-boolean hash', () => new native.TarApplier(dir, 'overlay', 1 as unknown as boolean)],
        ['missing chunk', () => (applier.write as unknown as () => unknown)()],
        ['string chunk', () => applier.write('abc' as unknown as Buffer)],
        ['array with a non-buffer', () => applier.write([Buffer.alloc(1), 'x' as unknown as Buffer])],
        ['file piece without a size', () => applier.write([{ path: '/x' } as unknown as Buffer])],
        ['file piece with a negative size', () => applier.write([{ path: '/x', size: -1 }])],
        ['file piece with a fractional size', () => applier.write([{ path: '/x', size: 1.5 }])],
        ['file piece with an empty path', () => applier.write([{ path: '', size: 1 }])],
        ['file piece with a non-string path', () => applier.write([{ path: 1 as unknown as string, size: 1 }])],
        ['non-buffer split', () => new native.TarExporter(dir, 'x' as unknown as Buffer)],
        ['range beyond the tar', () => exporter.readRange(0, 1)],
        ['offset beyond the tar', () => exporter.readRange(1, 0)],
        ['fractional length', () => exporter.readRange(0, 1.5)],
        ['negative offset', () => exporter.readRange(-1, 0)],
        ['short state', () => exporter.readRange(0, 0, Buffer.alloc(31), true)],
        ['state at the start', () => exporter.readRange(0, 0, Buffer.alloc(32), true)],
        ['called without new', () => (native.TarApplier as unknown as (d: string, m: string) => unknown)(dir, 'overlay')],
      ];
      for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
      expect((await exporter.readRange(0, 0)).bytes.length).to.equal(0);
    });
  });
});
