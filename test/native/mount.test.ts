import { expect } from 'chai';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { isMountRoot, mount, unmount } from '../../lib/native/mount.js';
import { Cleanups, isRoot, mountsBelow, scratchDir, tmpfsDir } from '../support/fixtures.js';

describe('native mount(2) and umount2', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  it('mounts a tmpfs, writes to it, and unmounts it', async function () {
    const dir = scratchDir(cleanups);
    await mount(dir, { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    expect(mountsBelow(dir)).to.deep.equal([dir]);
    writeFileSync(join(dir, 'f'), 'x');
    await unmount(dir);
    expect(mountsBelow(dir)).to.deep.equal([]);
    expect(existsSync(join(dir, 'f'))).to.equal(false);
  });

  it("tells a mount's root from the directories inside it and around it (statx)", async function () {
    const parent = scratchDir(cleanups);
    const dir = join(parent, 'mnt');
    mkdirSync(dir);
    expect(isMountRoot(dir)).to.equal(false);
    await mount(dir, { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    cleanups.defer(() => unmount(dir, ['detach']));
    mkdirSync(join(dir, 'sub'));
    symlinkSync(dir, join(parent, 'link'));
    expect(isMountRoot(dir)).to.equal(true);
    expect(isMountRoot(`${dir}/`)).to.equal(true);
    expect(isMountRoot(join(dir, 'sub'))).to.equal(false);
    expect(isMountRoot(join(parent, 'link'))).to.equal(false); // a symlink is not followed
    expect(isMountRoot(join(parent, 'missing'))).to.equal(false);
    expect(isMountRoot('/')).to.equal(true);
  });

  it('bind-mounts read-only with a remount', async function () {
    const src = await tmpfsDir(cleanups, '1m');
    const dst = scratchDir(cleanups);
    await mount(dst, { source: src, flags: ['bind'] });
    cleanups.defer(() => unmount(dst, ['detach']));
    await mount(dst, { flags: ['remount', 'bind', 'rdonly'] });
    expect(() => writeFileSync(join(dst, 'f'), 'x')).to.throw().with.property('code', 'EROFS');
  });

  it('rejects with a Node-style error naming the syscall and paths', async function () {
    const dir = scratchDir(cleanups);
    const error = await mount(dir, { source: '/nonexistent-dev', fstype: 'ext4' }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(Error);
    expect(error).to.include({ code: 'ENOENT', errno: -2, syscall: 'mount', path: '/nonexistent-dev', dest: dir });
    expect((error as Error).message).to.equal(
      `ENOENT: No such file or directory, mount '/nonexistent-dev' -> '${dir}'`,
    );
    expect((error as Error).stack).to.include('mount.test.ts');
  });

  it('names errnos that libuv does not know (ENOTBLK)', async function () {
    const dir = scratchDir(cleanups);
    const file = join(dir, 'not-a-device');
    writeFileSync(file, '');
    const error = await mount(dir, { source: file, fstype: 'ext4' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ENOTBLK', errno: -15, syscall: 'mount' });
  });

  it('reports EINVAL from umount2 on a directory that is not a mount point', async function () {
    const dir = scratchDir(cleanups);
    const error = await unmount(dir).catch((e: unknown) => e);
    expect(error).to.include({ code: 'EINVAL', syscall: 'umount2', path: dir });
  });

  it('reports EBUSY when a mount is in use, and detaches lazily on request', async function () {
    const dir = await tmpfsDir(cleanups, '1m');
    const inner = join(dir, 'inner');
    const { mkdirSync, openSync, closeSync } = await import('node:fs');
    mkdirSync(inner);
    await mount(inner, { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    const fd = openSync(inner, 'r');
    try {
      await unmount(dir).then(
        () => expect.fail('umount of a busy mount succeeded'),
        (e: unknown) => expect(e).to.include({ code: 'EBUSY' }),
      );
      await unmount(inner, ['detach']);
    } finally {
      closeSync(fd);
    }
  });

  describe('argument validation', function () {
    it('throws TypeErrors instead of crashing', async function () {
      const { native } = await import('../../lib/native/binding.js');
      const bad: Array<[string, () => unknown]> = [
        ['non-string target', () => native.mount('', 42 as unknown as string, '', 0, '')],
        ['empty target', () => native.mount('', '', '', 0, '')],
        ['NUL in target', () => native.mount('', '/tmp/a\0b', '', 0, '')],
        ['negative flags', () => native.mount('', '/tmp', '', -1, '')],
        ['fractional flags', () => native.mount('', '/tmp', '', 1.5, '')],
        ['unknown flag bits', () => native.mount('', '/tmp', '', 1 << 29, '')],
        ['missing arguments', () => (native.umount2 as unknown as () => unknown)()],
        ['unknown umount flag', () => native.umount2('/tmp', 1 << 20)],
      ];
      for (const [what, call] of bad) {
        expect(call, what).to.throw(TypeError);
      }
    });
  });
});
