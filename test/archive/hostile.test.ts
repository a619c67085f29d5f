// Hostile archives: whatever their paths, symlinks and hard links say, nothing
// outside the layer directory is created, changed or followed. A canary file
// next to the layer directory must stay exactly as it was.
import { expect } from 'chai';
import { readdirSync, readFileSync, readlinkSync, lstatSync, writeFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { applyBuffer, buildTar, exportBuffer, type TarEntry } from '../support/tar-builder.js';

describe('applyLayerArchive with hostile archives', function () {
  const cleanups = new Cleanups();
  let outside: string;
  let canary: string;
  let dir: string;
  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(function () {
    outside = scratchDir(cleanups, 'outside');
    canary = join(outside, 'canary');
    writeFileSync(canary, 'original');
    utimesSync(canary, 1_000_000, 1_000_000);
    dir = scratchDir(cleanups, 'layer');
  });
  afterEach(async function () {
    // The canary is untouched, and nothing else appeared beside it.
    expect(readdirSync(outside)).to.deep.equal(['canary']);
    const st = lstatSync(canary);
    expect(readFileSync(canary, 'utf8')).to.equal('original');
    expect({ nlink: st.nlink, mode: st.mode, mtime: st.mtimeMs, uid: st.uid }).to.deep.equal({
      nlink: 1, mode: 0o100644, mtime: 1_000_000_000, uid: 0,
    });
    await cleanups.release();
  });

  async function applyOk(entries: TarEntry[], whiteouts: 'overlay' | 'remove' = 'overlay'): Promise<void> {
    const tar = buildTar(entries);
    const result = await applyBuffer(tar, dir, { whiteouts });
    expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);
  }

  async function applyFails(entries: TarEntry[], code: string, entry?: string): Promise<Error> {
    const error = await applyBuffer(buildTar(entries), dir).then(
      () => expect.fail('the archive was applied'),
      (e: unknown) => e as Error,
    );
    expect(error).to.include({ name: 'ArchiveError', code });
    if (entry !== undefined) expect(error).to.have.property('entry', entry);
    return error;
  }

  it('rejects paths that climb out with ..', async function () {
    const error = await applyFails([{ name: '../canary', data: 'pwned' }], 'ERR_ARCHIVE_UNSAFE_PATH', '../canary');
    expect(error.message).to.equal("entry '../canary': path escapes the layer directory");
    await applyFails([{ name: 'a/../../canary', data: 'pwned' }], 'ERR_ARCHIVE_UNSAFE_PATH');
    await applyFails([{ name: 'x', type: '1', linkname: '../canary' }], 'ERR_ARCHIVE_UNSAFE_PATH');
    await applyFails([{ name: '../.wh.canary' }], 'ERR_ARCHIVE_UNSAFE_PATH');
  });

  it('keeps absolute paths inside the layer directory', async function () {
    await applyOk([{ name: canary, data: 'inside' }]);
    expect(readFileSync(join(dir, canary), 'utf8')).to.equal('inside');
  });

  it('resolves symlinks in parent directories inside the layer (chroot semantics)', async function () {
    await applyOk([
      { name: `${outside}/`, type: '5' },
      { name: 'abs', type: '2', linkname: outside },
      { name: 'abs/canary', data: 'through absolute link' },
      { name: 'up', type: '2', linkname: '../../../../../..' },
      { name: 'up/top', data: 'through relative link' },
      { name: 'abs/sub/', type: '5' },
      { name: 'abs/fifo', type: '6' },
    ]);
    expect(readFileSync(join(dir, outside, 'canary'), 'utf8')).to.equal('through absolute link');
    expect(readFileSync(join(dir, 'top'), 'utf8')).to.equal('through relative link');
    expect(lstatSync(join(dir, outside, 'sub')).isDirectory()).to.equal(true);
    expect(lstatSync(join(dir, outside, 'fifo')).isFIFO()).to.equal(true);
  });

  it('fails, without following it, when a parent symlink dangles inside the layer', async function () {
    await applyFails([
      { name: 'abs', type: '2', linkname: outside },
      { name: 'abs/canary', data: 'pwned' },
    ], 'ERR_ARCHIVE_APPLY', 'abs/canary');
  });

  it('replaces a symlink instead of writing through it', async function () {
    await applyOk([
      { name: 'x', type: '2', linkname: canary },
      { name: 'x', data: 'replaced' },
      { name: 'y', type: '2', linkname: canary },
      { name: 'y', type: '5', mode: 0o700 },
      { name: 'z', type: '2', linkname: canary },
      { name: 'z', type: '6', mode: 0o600 },
      { name: 'w', type: '2', linkname: canary },
      { name: 'w', type: '2', linkname: 'elsewhere', uid: 7 },
    ]);
    expect(readFileSync(join(dir, 'x'), 'utf8')).to.equal('replaced');
    expect(lstatSync(join(dir, 'y')).isDirectory()).to.equal(true);
    expect(lstatSync(join(dir, 'z')).isFIFO()).to.equal(true);
    expect(readlinkSync(join(dir, 'w'))).to.equal('elsewhere');
    expect(lstatSync(join(dir, 'w')).uid).to.equal(7);
  });

  it('handles a symlink replacing a directory part-way through', async function () {
    await applyOk([
      { name: `${outside}/`, type: '5' },
      { name: 'd/', type: '5' },
      { name: 'd/file', data: 'first' },
      { name: 'd', type: '2', linkname: outside },
      { name: 'd/canary', data: 'second' },
    ]);
    expect(readlinkSync(join(dir, 'd'))).to.equal(outside);
    expect(readFileSync(join(dir, outside, 'canary'), 'utf8')).to.equal('second');
  });

  it('never hard-links to files outside, even through symlinks', async function () {
    await applyFails([
      { name: 'abs', type: '2', linkname: outside },
      { name: 'h', type: '1', linkname: 'abs/canary' },
    ], 'ERR_ARCHIVE_APPLY', 'h');
    await applyFails([
      { name: 'up', type: '2', linkname: '../../..' },
      { name: 'h', type: '1', linkname: `up${canary}` },
    ], 'ERR_ARCHIVE_APPLY', 'h');
    // A hard link to a symlink links the symlink itself, which stays inside.
    await applyOk([
      { name: 's', type: '2', linkname: canary },
      { name: 'h', type: '1', linkname: 's' },
    ]);
    expect(readlinkSync(join(dir, 'h'))).to.equal(canary);
    expect(lstatSync(join(dir, 'h')).nlink).to.equal(2);
  });

  it('rejects a hard link through a symlink that loops', async function () {
    await applyFails([
      { name: 'a', type: '2', linkname: 'b' },
      { name: 'b', type: '2', linkname: 'a' },
      { name: 'a/x', data: 'x' },
    ], 'ERR_ARCHIVE_APPLY', 'a/x');
  });

  it('applies whiteouts through symlinks inside the layer only', async function () {
    for (const whiteouts of ['overlay', 'remove'] as const) {
      dir = scratchDir(cleanups, whiteouts);
      await applyOk([
        { name: `${outside}/`, type: '5' },
        { name: 'abs', type: '2', linkname: outside },
        { name: 'abs/.wh.canary' },
        { name: 'abs/.wh..wh..opq' },
      ], whiteouts);
      if (whiteouts === 'overlay') expect(lstatSync(join(dir, outside, 'canary')).isCharacterDevice()).to.equal(true);
    }
  });

  it('rejects an entry that would replace the layer directory', async function () {
    await applyFails([{ name: './', data: 'x' }], 'ERR_ARCHIVE_BAD_PATH');
    await applyFails([{ name: 'x', type: '1', linkname: 'x' }], 'ERR_ARCHIVE_BAD_PATH', 'x');
  });

  it('rejects NUL bytes and over-long paths', async function () {
    await applyFails([{ name: 'x', pax: { path: 'a\0b' } }], 'ERR_ARCHIVE_BAD_PATH');
    await applyFails([{ name: 'x', pax: { path: 'a/'.repeat(2100) } }], 'ERR_ARCHIVE_BAD_PATH');
    await applyFails([{ name: 'x', pax: { path: 'n'.repeat(300) } }], 'ERR_ARCHIVE_BAD_PATH');
    await applyFails([{ name: 'x', type: '2', pax: { linkpath: 'a\0b' } }], 'ERR_ARCHIVE_BAD_PATH');
  });
});
