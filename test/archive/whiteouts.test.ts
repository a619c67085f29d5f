// Whiteouts in both modes: overlay (char device 0/0, opaque xattr) for overlay
// upper dirs, remove (delete from the parent's copy) for vfs/btrfs.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { applyBuffer, buildTar, exportBuffer, xattrsBelow, type TarEntry } from '../support/tar-builder.js';

const layer: TarEntry[] = [
  { name: 'etc/', type: '5' },
  { name: 'etc/.wh.old.conf' },
  { name: 'etc/.wh.olddir' },
  { name: 'opaque/', type: '5' },
  { name: 'opaque/.wh..wh..opq' },
  { name: 'opaque/new', data: 'new' },
  { name: 'opaque/newdir/', type: '5' },
  { name: 'opaque/newdir/file', data: 'new too' },
  { name: '.wh.gone', uid: 12, gid: 34 },
  { name: 'etc/.wh.never-existed' },
  { name: '.wh..wh.plnk/', type: '5' },
  { name: '.wh..wh.plnk/123.456', data: 'aufs hard link target' },
  { name: '.wh..wh.aufs', data: '' },
];

/** The parent layer's content, as vfs/btrfs copy it before applying. */
function makeParent(dir: string): void {
  mkdirSync(join(dir, 'etc/olddir/sub'), { recursive: true });
  writeFileSync(join(dir, 'etc/olddir/sub/f'), 'old');
  writeFileSync(join(dir, 'etc/old.conf'), 'old');
  writeFileSync(join(dir, 'etc/kept.conf'), 'kept');
  mkdirSync(join(dir, 'opaque/newdir'), { recursive: true });
  writeFileSync(join(dir, 'opaque/old'), 'old');
  writeFileSync(join(dir, 'opaque/newdir/old-in-new'), 'old');
  writeFileSync(join(dir, 'gone'), 'old');
}

describe('applyLayerArchive whiteouts', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  it('overlay: makes 0/0 char devices and opaque directories', async function () {
    const dir = scratchDir(cleanups);
    const tar = buildTar(layer);
    const result = await applyBuffer(tar, dir, { whiteouts: 'overlay' });
    for (const path of ['etc/old.conf', 'etc/olddir', 'gone', 'etc/never-existed']) {
      const st = lstatSync(join(dir, path));
      expect(st.isCharacterDevice(), path).to.equal(true);
      expect(st.rdev, path).to.equal(0);
    }
    expect(lstatSync(join(dir, 'gone'))).to.include({ uid: 12, gid: 34 });
    expect(existsSync(join(dir, 'etc/.wh.old.conf'))).to.equal(false);
    expect(xattrsBelow(dir)['opaque']).to.deep.equal({ 'trusted.overlay.opaque': '0x79' });
    expect(readdirSync(join(dir, 'opaque')).sort()).to.deep.equal(['new', 'newdir']);
    expect(result.entries).to.equal(layer.length);
    expect(existsSync(join(dir, '.wh..wh.plnk'))).to.equal(false);
    expect(existsSync(join(dir, '.wh..wh.aufs'))).to.equal(false);
    expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);
  });

  it("remove: deletes whited-out paths and empties opaque directories of the parent's content", async function () {
    const dir = scratchDir(cleanups);
    makeParent(dir);
    const tar = buildTar(layer);
    const result = await applyBuffer(tar, dir, { whiteouts: 'remove' });
    const files = execFileSync('find', ['.', '-mindepth', '1'], { cwd: dir, encoding: 'utf8' }).trim().split('\n').sort();
    expect(files).to.deep.equal([
      './etc', './etc/kept.conf', './opaque', './opaque/new', './opaque/newdir', './opaque/newdir/file',
    ]);
    expect(xattrsBelow(dir)['opaque']).to.equal(undefined);
    expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);
  });

  it('rejects a whiteout that names nothing', async function () {
    const dir = scratchDir(cleanups);
    const error = await applyBuffer(buildTar([{ name: 'a/.wh.' }]), dir).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_ARCHIVE_BAD_PATH', entry: 'a/.wh.' });
  });
});
