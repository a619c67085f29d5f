import { expect } from 'chai';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { native } from '../../lib/native/binding.js';
import {
  createQgroup,
  createSubvolume,
  destroySubvolume,
  isReadOnly,
  isSubvolume,
  limitQgroup,
  qgroupId,
  qgroupUsage,
  rescanQuota,
  setQuota,
  setReadOnly,
  snapshotSubvolume,
  subvolumeId,
  syncFilesystem,
} from '../../lib/native/btrfs.js';
import { Cleanups, fdsBelow, isRoot, rejection, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { fsImage } from '../support/images.js';


const MiB = 1024 * 1024;

describe('native btrfs subvolumes and qgroups', function () {
  const cleanups = new Cleanups();
  let mnt: string;
  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    mnt = await fsImage(cleanups, 'btrfs');
  });
  afterEach(() => cleanups.release());

  it('creates a subvolume, tells it from a directory, and destroys it', async function () {
    const sub = join(mnt, 'sub');
    await createSubvolume(sub);
    expect(statSync(sub).ino).to.equal(256);
    expect(await isSubvolume(sub)).to.equal(true);
    expect(await isSubvolume(mnt)).to.equal(true); // the top level is a subvolume too
    mkdirSync(join(sub, 'plain'));
    expect(await isSubvolume(join(sub, 'plain'))).to.equal(false);
    writeFileSync(join(sub, 'file'), 'x');
    expect(await isSubvolume(join(sub, 'file'))).to.equal(false);
    expect(await subvolumeId(mnt)).to.equal(5);
    const id = await subvolumeId(sub);
    expect(id).to.be.greaterThanOrEqual(256);
    expect(await subvolumeId(join(sub, 'plain'))).to.equal(id);
    await destroySubvolume(sub);
    expect(existsSync(sub)).to.equal(false);
  });

  it('makes writable and read-only snapshots that are isolated from their source', async function () {
    const base = join(mnt, 'base');
    await createSubvolume(base);
    writeFileSync(join(base, 'f'), 'original');
    const rw = join(mnt, 'rw');
    const ro = join(mnt, 'ro');
    await snapshotSubvolume(base, rw);
    await snapshotSubvolume(base, ro, { readOnly: true });
    expect(await isSubvolume(rw)).to.equal(true);
    expect(await subvolumeId(rw)).to.not.equal(await subvolumeId(base));
    expect(await isReadOnly(rw)).to.equal(false);
    expect(await isReadOnly(ro)).to.equal(true);

    writeFileSync(join(rw, 'f'), 'changed in the snapshot');
    writeFileSync(join(base, 'g'), 'new in the source');
    expect(readFileSync(join(base, 'f'), 'utf8')).to.equal('original');
    expect(readFileSync(join(ro, 'f'), 'utf8')).to.equal('original');
    expect(existsSync(join(rw, 'g'))).to.equal(false);
    expect(() => writeFileSync(join(ro, 'h'), 'x')).to.throw().with.property('code', 'EROFS');

    await setReadOnly(ro, false);
    expect(await isReadOnly(ro)).to.equal(false);
    writeFileSync(join(ro, 'h'), 'x');
    await setReadOnly(rw, true);
    await setReadOnly(rw, true); // already so: nothing to do
    expect(await isReadOnly(rw)).to.equal(true);

    for (const path of [rw, ro, base]) await destroySubvolume(path);
    expect(readdirSync(mnt)).to.deep.equal([]);
  });

  it('destroys a subvolume with nested (and read-only) subvolumes inside', async function () {
    const outer = join(mnt, 'outer');
    await createSubvolume(outer);
    mkdirSync(join(outer, 'a/b'), { recursive: true });
    await createSubvolume(join(outer, 'a/b/inner'));
    await createSubvolume(join(outer, 'a/b/inner/deeper'));
    writeFileSync(join(outer, 'a/b/inner/deeper/f'), 'x');
    await createSubvolume(join(outer, 'sibling'));
    await snapshotSubvolume(join(outer, 'sibling'), join(outer, 'a/frozen'), { readOnly: true });
    // A read-only subvolume that itself holds a subvolume must be made writable to empty it.
    await createSubvolume(join(outer, 'ro-parent'));
    await createSubvolume(join(outer, 'ro-parent/child'));
    await setReadOnly(join(outer, 'ro-parent'), true);
    // And the outer one read-only too.
    await setReadOnly(outer, true);

    await destroySubvolume(outer);
    expect(existsSync(outer)).to.equal(false);
    expect(readdirSync(mnt)).to.deep.equal([]);
  });

  it('limits a subvolume with a qgroup: writes past the limit fail with EDQUOT', async function () {
    this.timeout(120_000);
    await setQuota(mnt, true);
    const sub = join(mnt, 'limited');
    await createSubvolume(sub);
    const id = await subvolumeId(sub);
    await limitQgroup(sub, { maxReferenced: 8 * MiB });
    await syncFilesystem(sub);
    let usage = await qgroupUsage(sub);
    expect(usage).to.include({ qgroupId: id, maxReferenced: 8 * MiB, maxExclusive: 0 });
    expect(usage.referenced).to.be.lessThan(MiB);

    writeFileSync(join(sub, 'two-mib'), Buffer.alloc(2 * MiB, 1));
    await syncFilesystem(sub);
    usage = await qgroupUsage(sub);
    expect(usage.referenced).to.be.within(2 * MiB, 3 * MiB);
    expect(usage.exclusive).to.be.within(2 * MiB, 3 * MiB);
    // By id, from anywhere on the filesystem, gives the same.
    expect(await qgroupUsage(mnt, id)).to.deep.equal(usage);

    const fd = openSync(join(sub, 'big'), 'w');
    let error: NodeJS.ErrnoException | undefined;
    try {
      const chunk = Buffer.alloc(MiB, 2);
      for (let i = 0; i < 16 && !error; i++) {
        try {
          writeSync(fd, chunk);
        } catch (e) {
          error = e as NodeJS.ErrnoException;
        }
      }
    } finally {
      closeSync(fd);
    }
    // libuv has no name for EDQUOT (122): Node says UNKNOWN.
    expect(error?.errno).to.equal(-122);

    // Lifting the limit lets writes through again.
    await limitQgroup(sub, {});
    expect(await qgroupUsage(sub)).to.include({ maxReferenced: 0, maxExclusive: 0 });
    writeFileSync(join(sub, 'more'), Buffer.alloc(10 * MiB, 3));

    // A snapshot shares the data: both reference it, neither holds it exclusively.
    await snapshotSubvolume(sub, join(mnt, 'snap'));
    await rescanQuota(mnt);
    await syncFilesystem(mnt);
    const snap = await qgroupUsage(join(mnt, 'snap'));
    usage = await qgroupUsage(sub);
    expect(snap.referenced).to.be.greaterThan(10 * MiB);
    expect(snap.exclusive).to.be.lessThan(MiB);
    expect(usage.exclusive).to.be.lessThan(MiB);

    const level1 = qgroupId(1, 100);
    await createQgroup(mnt, level1);
    expect(await qgroupUsage(mnt, level1)).to.include({ qgroupId: level1, referenced: 0, exclusive: 0 });
    expect((await rejection(createQgroup(mnt, level1))).code).to.equal('EEXIST');
    await rescanQuota(mnt, { wait: false });
    await destroySubvolume(join(mnt, 'snap'));
    await destroySubvolume(sub);
    await setQuota(mnt, false);
    expect((await rejection(qgroupUsage(mnt, id))).code).to.equal('ENOENT');
  });

  it('rejects with Node-style errors', async function () {
    const plain = join(mnt, 'plain');
    mkdirSync(plain);
    let error = await rejection(snapshotSubvolume(plain, join(mnt, 'snap')));
    expect(error).to.include({ code: 'EINVAL', syscall: 'btrfs_snap_create', path: plain, dest: join(mnt, 'snap') });
    expect(error.stack).to.include('btrfs.test.ts');
    error = await rejection(destroySubvolume(plain));
    expect(error).to.include({ code: 'EINVAL', syscall: 'btrfs_snap_destroy', path: plain });
    error = await rejection(setReadOnly(plain, true));
    expect(error).to.include({ code: 'EINVAL', path: plain });

    await createSubvolume(join(mnt, 'sub'));
    error = await rejection(createSubvolume(join(mnt, 'sub')));
    expect(error).to.include({ code: 'EEXIST', syscall: 'btrfs_subvol_create' });
    error = await rejection(createSubvolume(join(mnt, 'missing/sub')));
    expect(error).to.include({ code: 'ENOENT', syscall: 'open', path: join(mnt, 'missing') });
    error = await rejection(snapshotSubvolume(join(mnt, 'sub'), join(mnt, 'sub')));
    expect(error.code).to.equal('EEXIST');
    error = await rejection(createSubvolume(join(mnt, 'x'.repeat(256))));
    expect(error.code).to.equal('ENAMETOOLONG');
    error = await rejection(destroySubvolume(join(mnt, 'nothing')));
    expect(error).to.include({ code: 'ENOENT', syscall: 'open' });
    error = await rejection(qgroupUsage(join(mnt, 'sub')));
    expect(error).to.include({ code: 'ENOENT', syscall: 'btrfs_tree_search' });
    // The top level cannot be deleted, and its subvolumes are left alone.
    error = await rejection(destroySubvolume(mnt));
    expect(error).to.include({ code: 'EPERM', syscall: 'btrfs_snap_destroy' });
    expect(await isSubvolume(join(mnt, 'sub'))).to.equal(true);
    await destroySubvolume(join(mnt, 'sub'));

    // Off btrfs the ioctls do not exist.
    const ext4 = await fsImage(cleanups, 'ext4');
    const tmpfs = await tmpfsDir(cleanups, '1m');
    for (const dir of [ext4, tmpfs]) {
      mkdirSync(join(dir, 'd'));
      expect(await isSubvolume(join(dir, 'd'))).to.equal(false);
      expect(await rejection(destroySubvolume(join(dir, 'd')))).to.include({ code: 'ENOTTY', path: join(dir, 'd') });
      expect(await rejection(createSubvolume(join(dir, 'e')))).to.include({ code: 'ENOTTY', syscall: 'btrfs_subvol_create' });
      expect(await rejection(subvolumeId(dir))).to.include({ code: 'ENOTTY', syscall: 'btrfs_ino_lookup' });
      expect(await rejection(setQuota(dir, true))).to.include({ code: 'ENOTTY', syscall: 'btrfs_quota_ctl' });
      expect((await rejection(isReadOnly(join(dir, 'd')))).code).to.equal('ENOTTY');
      expect((await rejection(syncFilesystem(dir))).code).to.equal('ENOTTY');
    }
    // A snapshot across filesystems.
    await createSubvolume(join(mnt, 'src'));
    error = await rejection(snapshotSubvolume(join(mnt, 'src'), join(ext4, 'snap')));
    expect(error.code).to.be.oneOf(['EXDEV', 'ENOTTY']);
    expect((await rejection(isSubvolume(join(mnt, 'nothing')))).code).to.equal('ENOENT');
    await destroySubvolume(join(mnt, 'src'));
  });

  it('closes every fd it opens', async function () {
    const sub = join(mnt, 'sub');
    await createSubvolume(sub);
    mkdirSync(join(sub, 'd'));
    await createSubvolume(join(sub, 'd/nested'));
    await snapshotSubvolume(sub, join(mnt, 'snap'), { readOnly: true });
    await isReadOnly(join(mnt, 'snap'));
    await subvolumeId(sub);
    await rejection(destroySubvolume(join(sub, 'd')));
    await rejection(qgroupUsage(sub));
    await destroySubvolume(join(mnt, 'snap'));
    await destroySubvolume(sub);
    expect(fdsBelow(mnt)).to.deep.equal([]);
  });

  describe('argument validation', function () {
    it('throws TypeErrors instead of crashing', function () {
      const dir = scratchDir(cleanups);
      const bad: Array<[string, () => unknown]> = [
        ['non-string path', () => native.btrfsCreateSubvolume(1 as unknown as string)],
        ['empty path', () => native.btrfsDestroySubvolume('')],
        ['NUL in path', () => native.btrfsIsSubvolume('/tmp/a\0b')],
        ['missing dest', () => (native.btrfsSnapshot as unknown as (s: string) => unknown)(dir)],
        ['non-boolean readOnly', () => native.btrfsSnapshot(dir, dir, 1 as unknown as boolean)],
        ['non-boolean setReadOnly', () => native.btrfsSetReadOnly(dir, 'yes' as unknown as boolean)],
        ['non-boolean enable', () => native.btrfsQuotaEnable(dir, undefined as unknown as boolean)],
        ['negative qgroup', () => native.btrfsQgroupCreate(dir, -1)],
        ['fractional qgroup', () => native.btrfsQgroupUsage(dir, 1.5)],
        ['unsafe limit', () => native.btrfsQgroupLimit(dir, 0, 2 ** 60, 0)],
        ['string limit', () => native.btrfsQgroupLimit(dir, 0, 0, '1' as unknown as number)],
        ['non-boolean wait', () => native.btrfsQuotaRescan(dir, null as unknown as boolean)],
        ['missing path', () => (native.btrfsSubvolumeId as unknown as () => unknown)()],
        ['non-string sync', () => native.btrfsSync({} as unknown as string)],
        ['non-string getReadOnly', () => native.btrfsGetReadOnly([] as unknown as string)],
      ];
      for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
    });
  });
});
