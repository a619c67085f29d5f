// Corrupt and truncated streams fail with an error naming the entry and the
// problem; odd but valid endings are kept byte-exact.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { applyBuffer, buildTar, exportBuffer, paxData, sha256, tarHeader, type TarEntry } from '../support/tar-builder.js';

describe('applyLayerArchive with malformed archives', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  async function fails(tar: Buffer, code: string, message: string | RegExp): Promise<void> {
    const dir = scratchDir(cleanups);
    const error = await applyBuffer(tar, dir).then(
      () => expect.fail('the archive was applied'),
      (e: unknown) => e as Error,
    );
    expect(error).to.include({ name: 'ArchiveError', code });
    if (typeof message === 'string') expect(error.message).to.equal(message);
    else expect(error.message).to.match(message);
  }

  async function roundTrips(tar: Buffer): Promise<string> {
    const dir = scratchDir(cleanups);
    const result = await applyBuffer(tar, dir);
    expect(result.diffId).to.equal(sha256(tar));
    expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);
    return dir;
  }

  const file: TarEntry = { name: 'file', data: 'x'.repeat(1000) };

  it('rejects a bad header checksum', async function () {
    await fails(buildTar([{ ...file, checksumDelta: 1 }]), 'ERR_ARCHIVE_CORRUPT', "entry 'file': header checksum mismatch");
  });

  it('quotes a hostile entry name without its control characters', async function () {
    const tar = buildTar([{ ...file, name: '\x1b[2Jevil\x07', checksumDelta: 1 }]);
    await fails(tar, 'ERR_ARCHIVE_CORRUPT', "entry '\\x1b[2Jevil\\x07': header checksum mismatch");
  });

  it('rejects negative, absurd and unreadable sizes', async function () {
    const negative = Buffer.alloc(12, 0xff);
    await fails(buildTar([{ name: 'neg', sizeField: negative }]), 'ERR_ARCHIVE_CORRUPT', /entry 'neg': absurd size -1/);
    const huge = Buffer.alloc(12);
    huge[0] = 0x80;
    huge[4] = 0x7f;
    await fails(buildTar([{ name: 'huge', sizeField: huge }]), 'ERR_ARCHIVE_CORRUPT', /entry 'huge': absurd size/);
    await fails(buildTar([{ name: 'text', sizeField: Buffer.from('12x4\0') }]), 'ERR_ARCHIVE_CORRUPT', "entry 'text': unreadable size field");
    await fails(buildTar([{ name: 'pax', pax: { size: '-5' } }]), 'ERR_ARCHIVE_CORRUPT', "entry 'pax': absurd size");
  });

  it('accepts base-256 numbers', async function () {
    const size = Buffer.alloc(12);
    size[0] = 0x80;
    size[11] = 5;
    const dir = await roundTrips(buildTar([{ name: 'b256', data: 'hello', sizeField: size }]));
    expect(readFileSync(join(dir, 'b256'), 'utf8')).to.equal('hello');
  });

  it('rejects entry types it cannot apply', async function () {
    await fails(buildTar([{ name: 'volume', type: 'V' }]), 'ERR_ARCHIVE_UNSUPPORTED', "entry 'volume': unsupported entry type 'V'");
  });

  it('rejects malformed and oversized extension headers', async function () {
    const bad = Buffer.from('99 path=x\n');
    const tar = Buffer.concat([tarHeader({ name: 'p', type: 'x' }, bad.length), bad, Buffer.alloc(512 - bad.length), buildTar([file])]);
    await fails(tar, 'ERR_ARCHIVE_CORRUPT', /malformed PAX record/);
    await fails(buildTar([{ name: 'L', type: 'L', size: 64 << 20 }]), 'ERR_ARCHIVE_CORRUPT', /too large/);
    await fails(buildTar([{ name: 'x', pax: { mtime: 'yesterday' } }]), 'ERR_ARCHIVE_CORRUPT', "entry 'x': bad PAX mtime");
    const global = paxData({ comment: 'g'.repeat(9 << 20) });
    const globals = Buffer.concat([0, 1].map((i) => {
      const data = paxData({ [`comment${i}`]: 'g'.repeat(9 << 20) });
      return Buffer.concat([tarHeader({ name: 'g', type: 'g' }, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
    }));
    expect(global.length).to.be.above(9 << 20);
    await fails(Buffer.concat([globals, buildTar([file])]), 'ERR_ARCHIVE_CORRUPT', 'global PAX headers are too large');
  });

  it('rejects streams cut inside a header, inside data, or before the end blocks', async function () {
    const whole = buildTar([file, { name: 'second', data: 'y' }]);
    await fails(whole.subarray(0, 700), 'ERR_ARCHIVE_TRUNCATED', "entry 'file': the stream ends inside this entry");
    await fails(whole.subarray(0, 1536 + 100), 'ERR_ARCHIVE_TRUNCATED', "entry 'second': the stream ends inside a header");
    await fails(whole.subarray(0, 1536 + 50), 'ERR_ARCHIVE_TRUNCATED', 'the stream ends inside a header');
    await fails(whole.subarray(0, 2560), 'ERR_ARCHIVE_TRUNCATED', 'the stream ends without an end-of-archive block');
    await fails(Buffer.alloc(0), 'ERR_ARCHIVE_TRUNCATED', 'the stream ends without an end-of-archive block');
    const pax = paxData({ path: 'long' });
    const cut = Buffer.concat([tarHeader({ name: 'p', type: 'x' }, pax.length), pax, Buffer.alloc(512 - pax.length)]);
    await fails(cut, 'ERR_ARCHIVE_TRUNCATED', 'the stream ends after an extension header');
  });

  it('rejects a header after an end-of-archive block', async function () {
    const tar = Buffer.concat([buildTar([file], { endBlocks: 1 }), buildTar([{ name: 'late', data: 'z' }])]);
    await fails(tar, 'ERR_ARCHIVE_CORRUPT', "entry 'late': header after an end-of-archive block");
  });

  it('accepts one end block (as Go and Docker do) and keeps trailing bytes for export', async function () {
    await roundTrips(buildTar([file], { endBlocks: 1 }));
    await roundTrips(buildTar([file], { endBlocks: 2, trailer: Buffer.alloc(8192 + 17, 0xaa) }));
    await roundTrips(buildTar([]));
  });

  it('applies the same path twice (later wins) and still exports byte-exact', async function () {
    const dir = await roundTrips(buildTar([
      { name: 'a', data: 'first version' },
      { name: 'link', type: '1', linkname: 'a' },
      { name: 'a', data: 'second' },
      { name: 'd/', type: '5', mode: 0o700 },
      { name: 'd/inner', data: 'inner content' },
      { name: 'd/sub/deep', data: 'deep content' },
      { name: 'd', data: 'file replacing a dir' },
      { name: 'e/', type: '5', mode: 0o700 },
      { name: 'e/kept', data: 'kept' },
      { name: 'e/', type: '5', mode: 0o751, uid: 5 },
    ]));
    expect(readFileSync(join(dir, 'a'), 'utf8')).to.equal('second');
    expect(readFileSync(join(dir, 'link'), 'utf8')).to.equal('first version');
    expect(readFileSync(join(dir, 'd'), 'utf8')).to.equal('file replacing a dir');
    expect(readFileSync(join(dir, 'e/kept'), 'utf8')).to.equal('kept');
  });

  it('knows a file reached through a symlinked directory by its real path', async function () {
    const dir = await roundTrips(buildTar([
      { name: 'usr/lib/', type: '5' },
      { name: 'lib', type: '2', linkname: 'usr/lib' },
      { name: 'lib/libc.so', data: 'written through the symlink' },
      { name: 'usr/lib/libc.so', data: 'replaced by its real name' },
      { name: 'lib/sub/deep', data: 'created parents through the symlink' },
      { name: 'usr/lib/sub', data: 'file replacing that parent' },
    ]));
    expect(readFileSync(join(dir, 'usr/lib/libc.so'), 'utf8')).to.equal('replaced by its real name');
    expect(readFileSync(join(dir, 'usr/lib/sub'), 'utf8')).to.equal('file replacing that parent');
  });

  it('reads GNU long names and links and PAX overrides', async function () {
    const longName = `${'dir/'.repeat(40)}${'n'.repeat(200)}`;
    const tar = buildTar([
      { name: '././@LongLink', type: 'L', data: `${longName}\0` },
      { name: 'short', data: 'long named' },
      { name: '././@LongLink', type: 'K', data: 'target/'.repeat(30) },
      { name: 'sym', type: '2', linkname: 'ignored' },
      { name: 'ignored', pax: { path: 'pax-path', uid: '4000000000', gid: '7', mtime: '1234567890.123456789' }, data: 'p' },
    ]);
    const dir = await roundTrips(tar);
    const { lstatSync, readlinkSync } = await import('node:fs');
    expect(readFileSync(join(dir, longName), 'utf8')).to.equal('long named');
    expect(readlinkSync(join(dir, 'sym'))).to.equal('target/'.repeat(30));
    const st = lstatSync(join(dir, 'pax-path'), { bigint: true });
    expect([st.uid, st.gid, st.mtimeNs]).to.deep.equal([4000000000n, 7n, 1234567890123456789n]);
  });

  it('sets xattrs from SCHILY and LIBARCHIVE records, and skips the ones the kernel refuses with EPERM', async function () {
    const { xattrsBelow } = await import('../support/tar-builder.js');
    // trusted.* on the file: tmpfs (the VM's /tmp, Linux 6.1) takes user.* only since 6.6.
    // user.* on a symlink is refused (EPERM) by every kernel.
    const dir = await roundTrips(buildTar([
      { name: 'f', data: 'x', pax: { 'SCHILY.xattr.trusted.a': Buffer.from([0, 1, 2, 255]), 'LIBARCHIVE.xattr.trusted.b%3Dc': Buffer.from('hi').toString('base64') } },
      { name: 'l', type: '2', linkname: 'f', pax: { 'SCHILY.xattr.user.refused': 'x' } },
    ]));
    expect(xattrsBelow(dir)['f']).to.deep.equal({ 'trusted.a': '0x000102ff', 'trusted.b\\075c': '0x6869' });
    expect(xattrsBelow(dir)['l']).to.equal(undefined);
  });
});
