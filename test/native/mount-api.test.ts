import { expect } from 'chai';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { native } from '../../lib/native/binding.js';
import {
  bindMount, fsconfig, fsmount, fsopen, fspick, mountFs, mountSetattr, moveMount, openTree, setPropagation,
} from '../../lib/native/mount-api.js';
import { mount, unmount } from '../../lib/native/mount.js';
import { probeOverlayFeatures } from '../../lib/native/overlay.js';
import { Cleanups, isRoot, mountsBelow, requireFeature, scratchDir, tmpfsDir } from '../support/fixtures.js';

interface MountEntry {
  options: string[];
  optional: string[];
  fstype: string;
  superOptions: string[];
}

/** The /proc/self/mountinfo entry of the mount at `point` (the top one if stacked). */
function mountEntry(point: string): MountEntry {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n');
  const line = lines.reverse().find((l) => l.split(' ')[4] === point);
  if (!line) throw new Error(`${point} is not a mount point`);
  const fields = line.split(' ');
  const dash = fields.indexOf('-');
  return {
    options: (fields[5] ?? '').split(','),
    optional: fields.slice(6, dash),
    fstype: fields[dash + 1] ?? '',
    superOptions: (fields[dash + 3] ?? '').split(','),
  };
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('native new mount API', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  it('mounts a tmpfs with fsopen, fsconfig, fsmount and move_mount', async function () {
    const dir = scratchDir(cleanups);
    const context = await fsopen('tmpfs');
    await fsconfig(context, { cmd: 'string', key: 'source', value: 'strata-tmp' });
    await fsconfig(context, { cmd: 'string', key: 'size', value: '2m' });
    await fsconfig(context, { cmd: 'string', key: 'mode', value: '0700' });
    await fsconfig(context, { cmd: 'create' });
    const detached = await fsmount(context, ['nodev', 'noatime']);
    await context.close();
    writeFileSync(`/proc/self/fd/${detached.fd}/before-attach`, 'x');
    await moveMount(detached, dir);
    cleanups.defer(() => unmount(dir, ['detach']));
    await detached.close();
    expect(mountsBelow(dir)).to.deep.equal([dir]);
    expect(readFileSync(join(dir, 'before-attach'), 'utf8')).to.equal('x');
    const entry = mountEntry(dir);
    expect(entry.fstype).to.equal('tmpfs');
    expect(entry.options).to.include.members(['nodev', 'noatime']);
    expect(entry.superOptions).to.include.members(['size=2048k', 'mode=700']);
  });

  it('closes fds with close(), twice safely, and through await using', async function () {
    const context = await fsopen('tmpfs');
    const fd = context.fd;
    await context.close();
    await context.close();
    expect(context.closed).to.equal(true);
    expect(() => fstatSync(fd)).to.throw().with.property('code', 'EBADF');
    expect(() => context.fd).to.throw(/closed/);
    let kept = -1;
    {
      await using scoped = await fsopen('tmpfs');
      kept = scoped.fd;
      fstatSync(kept);
    }
    expect(() => fstatSync(kept)).to.throw().with.property('code', 'EBADF');
    {
      using scoped = await fsopen('tmpfs');
      kept = scoped.fd;
    }
    expect(() => fstatSync(kept)).to.throw().with.property('code', 'EBADF');
  });

  it('mountFs mounts with flags, string options and attributes', async function () {
    const dir = scratchDir(cleanups);
    // inode64 is a flag tmpfs has had since 5.9 (noswap needs 6.4; the VM runs 6.1).
    await mountFs({ fstype: 'tmpfs', source: 'tmpfs', options: { size: '1m', inode64: true }, target: dir, attrs: ['rdonly', 'nosuid'] });
    cleanups.defer(() => unmount(dir, ['detach']));
    const entry = mountEntry(dir);
    expect(entry.options).to.include.members(['ro', 'nosuid']);
    expect(entry.superOptions).to.include('inode64');
    expect(() => writeFileSync(join(dir, 'f'), 'x')).to.throw().with.property('code', 'EROFS');
  });

  it('rejects a bad fsconfig value with the kernel log in the error', async function () {
    await using context = await fsopen('tmpfs');
    const error = await fsconfig(context, { cmd: 'string', key: 'size', value: 'lots' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'EINVAL', errno: -22, syscall: 'fsconfig', path: 'size' });
    expect(error).to.have.property('kernelLog', "e tmpfs: Bad value for 'size'");
    expect((error as Error).message).to.equal(
      "EINVAL: Invalid argument, fsconfig 'size': e tmpfs: Bad value for 'size'",
    );
    expect((error as Error).stack).to.include('mount-api.test.ts');
    const unknown = await fsconfig(context, { cmd: 'flag', key: 'no-such-flag' }).catch((e: unknown) => e);
    expect(unknown).to.have.property('kernelLog', "e tmpfs: Unknown parameter 'no-such-flag'");
  });

  it('reports errors of fsopen, fsmount, move_mount, open_tree and mount_setattr', async function () {
    const dir = scratchDir(cleanups);
    expect(await fsopen('no-such-fs').catch((e: unknown) => e)).to.include({ code: 'ENODEV', syscall: 'fsopen', path: 'no-such-fs' });
    await using context = await fsopen('tmpfs');
    expect(await fsmount(context).catch((e: unknown) => e)).to.include({ code: 'EINVAL', syscall: 'fsmount' });
    await fsconfig(context, { cmd: 'create' });
    await using detached = await fsmount(context);
    const missing = join(dir, 'missing');
    expect(await moveMount(detached, missing).catch((e: unknown) => e)).to.include({
      code: 'ENOENT', syscall: 'move_mount', dest: missing,
    });
    expect(await openTree(missing).catch((e: unknown) => e)).to.include({ code: 'ENOENT', syscall: 'open_tree', path: missing });
    expect(await mountSetattr(dir, { set: ['rdonly'] }).catch((e: unknown) => e)).to.include({
      code: 'EINVAL', syscall: 'mount_setattr', path: dir,
    });
  });

  it('sets a layer by fd (FSCONFIG_SET_FD); overlay refuses SET_PATH and SET_PATH_EMPTY', async function () {
    // overlay takes layers by fd (6.13+); SET_PATH is rejected by its parser.
    requireFeature(this, probeOverlayFeatures().layersByFd, 'overlay takes layers by fd since Linux 6.13');
    const base = await tmpfsDir(cleanups, '4m');
    for (const name of ['lower', 'upper', 'work', 'merged']) mkdirSync(join(base, name));
    writeFileSync(join(base, 'lower', 'f'), 'lower');
    const lowerFd = openSync(join(base, 'lower'), 'r');
    try {
      await using context = await fsopen('overlay');
      await fsconfig(context, { cmd: 'fd', key: 'lowerdir+', fd: lowerFd });
      await fsconfig(context, { cmd: 'string', key: 'upperdir', value: join(base, 'upper') });
      await fsconfig(context, { cmd: 'string', key: 'workdir', value: join(base, 'work') });
      const error = await fsconfig(context, { cmd: 'path', key: 'lowerdir+', path: join(base, 'lower') }).catch((e: unknown) => e);
      expect(error).to.include({ code: 'EINVAL' }).and.have.property('kernelLog', "e overlay: Bad value for 'lowerdir+'");
      const empty = await fsconfig(context, { cmd: 'path-empty', key: 'lowerdir+', fd: lowerFd }).catch((e: unknown) => e);
      expect(empty).to.include({ code: 'EINVAL' }).and.have.property('kernelLog', "e overlay: Bad value for 'lowerdir+'");
      await fsconfig(context, { cmd: 'create' });
      await using detached = await fsmount(context);
      await moveMount(detached, join(base, 'merged'));
      cleanups.defer(() => unmount(join(base, 'merged'), ['detach']));
    } finally {
      closeSync(lowerFd);
    }
    expect(readFileSync(join(base, 'merged', 'f'), 'utf8')).to.equal('lower');
  });

  it('reconfigures a mounted filesystem through fspick', async function () {
    const dir = await tmpfsDir(cleanups, '1m');
    {
      await using context = await fspick(dir);
      await fsconfig(context, { cmd: 'string', key: 'size', value: '3m' });
      await fsconfig(context, { cmd: 'reconfigure' });
    }
    expect(mountEntry(dir).superOptions).to.include('size=3072k');
    // An fsopen context is not awaiting reconfiguration.
    await using fresh = await fsopen('tmpfs');
    expect(await fsconfig(fresh, { cmd: 'reconfigure' }).catch((e: unknown) => e)).to.include({ code: 'EBUSY', syscall: 'fsconfig' });
    expect(await fspick(join(dir, 'missing')).catch((e: unknown) => e)).to.include({ code: 'ENOENT', syscall: 'fspick' });
  });

  it('clones a tree recursively with open_tree and attaches it', async function () {
    const src = await tmpfsDir(cleanups, '1m');
    mkdirSync(join(src, 'sub'));
    await mount(join(src, 'sub'), { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    writeFileSync(join(src, 'sub', 'f'), 'in sub');
    const flat = scratchDir(cleanups);
    const deep = scratchDir(cleanups);
    {
      await using tree = await openTree(src, { clone: true });
      await moveMount(tree, flat);
      cleanups.defer(() => unmount(flat, ['detach']));
    }
    {
      await using tree = await openTree(src, { clone: true, recursive: true });
      await moveMount(tree, deep);
      cleanups.defer(() => unmount(deep, ['detach']));
    }
    expect(mountsBelow(flat)).to.deep.equal([flat]);
    expect(mountsBelow(deep)).to.deep.equal([deep, join(deep, 'sub')]);
    expect(readFileSync(join(deep, 'sub', 'f'), 'utf8')).to.equal('in sub');
    // A reference without clone names the mount itself: moving it moves src/sub.
    await using sub = await openTree(join(src, 'sub'));
    await mountSetattr(sub, { set: ['noexec'] });
    expect(mountEntry(join(src, 'sub')).options).to.include('noexec');
    expect(mountEntry(join(deep, 'sub')).options).to.not.include('noexec');
  });

  it('bindMount readOnly+recursive makes submounts read-only through the bind', async function () {
    const src = await tmpfsDir(cleanups, '1m');
    mkdirSync(join(src, 'sub'));
    await mount(join(src, 'sub'), { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    const dst = scratchDir(cleanups);
    await bindMount(src, dst, { recursive: true, readOnly: true });
    cleanups.defer(() => unmount(dst, ['detach']));
    expect(mountsBelow(dst)).to.deep.equal([dst, join(dst, 'sub')]);
    expect(() => writeFileSync(join(dst, 'f'), 'x')).to.throw().with.property('code', 'EROFS');
    expect(() => writeFileSync(join(dst, 'sub', 'f'), 'x')).to.throw().with.property('code', 'EROFS');
    expect(mountEntry(join(dst, 'sub')).options).to.include('ro');
    // The sources stay writable, and what is written shows through.
    writeFileSync(join(src, 'sub', 'f'), 'written');
    expect(readFileSync(join(dst, 'sub', 'f'), 'utf8')).to.equal('written');
  });

  it('bindMount without recursive leaves submounts out, and is writable by default', async function () {
    const src = await tmpfsDir(cleanups, '1m');
    mkdirSync(join(src, 'sub'));
    await mount(join(src, 'sub'), { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    const dst = scratchDir(cleanups);
    await bindMount(src, dst);
    cleanups.defer(() => unmount(dst, ['detach']));
    expect(mountsBelow(dst)).to.deep.equal([dst]);
    writeFileSync(join(dst, 'sub', 'under-the-submount'), 'x');
    expect(readdirSync(join(src, 'sub'))).to.deep.equal([]);
  });

  it('changes propagation, recursively on request', async function () {
    const src = await tmpfsDir(cleanups, '1m');
    mkdirSync(join(src, 'sub'));
    await mount(join(src, 'sub'), { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    const sub = join(src, 'sub');
    const tags = (point: string): string[] => mountEntry(point).optional.map((t) => t.replace(/:\d+$/, ''));
    expect(tags(src)).to.deep.equal([]);
    await setPropagation(src, 'shared');
    expect(tags(src)).to.deep.equal(['shared']);
    expect(tags(sub)).to.deep.equal([]);
    await setPropagation(src, 'shared', true);
    expect(tags(sub)).to.deep.equal(['shared']);
    // A bind of a shared mount joins its peer group; slave makes it receive only.
    const dst = scratchDir(cleanups);
    await bindMount(src, dst);
    cleanups.defer(() => unmount(dst, ['detach']));
    await setPropagation(dst, 'slave');
    expect(tags(dst)).to.deep.equal(['master']);
    await setPropagation(src, 'unbindable', true);
    expect(tags(src)).to.deep.equal(['unbindable']);
    expect(tags(sub)).to.deep.equal(['unbindable']);
    expect(await bindMount(src, scratchDir(cleanups)).catch((e: unknown) => e)).to.include({ code: 'EINVAL', syscall: 'open_tree' });
    await setPropagation(src, 'private', true);
    expect(tags(src)).to.deep.equal([]);
    expect(tags(sub)).to.deep.equal([]);
  });

  it('sets and clears attributes, atime modes included', async function () {
    const dir = await tmpfsDir(cleanups, '1m');
    await mountSetattr(dir, { set: ['noatime', 'nosymfollow', 'nodiratime'] });
    expect(mountEntry(dir).options).to.include.members(['noatime', 'nosymfollow', 'nodiratime']);
    await mountSetattr(dir, { set: ['strictatime'], clear: ['nosymfollow'] });
    expect(mountEntry(dir).options).to.not.include.members(['noatime', 'nosymfollow']);
    await mountSetattr(dir, { set: ['relatime'] });
    expect(mountEntry(dir).options).to.include('relatime');
  });

  it('closes every fd it opens, on success and on failure', async function () {
    const dir = scratchDir(cleanups);
    const src = await tmpfsDir(cleanups, '1m');
    const batch = async (): Promise<void> => {
      const target = join(dir, `t${Math.random().toString(36).slice(2)}`);
      mkdirSync(target);
      await mountFs({ fstype: 'tmpfs', source: 'tmpfs', options: { size: '1m' }, target });
      await unmount(target);
      await mountFs({ fstype: 'tmpfs', options: { size: 'bogus' }, target }).catch(() => {});
      await mountFs({ fstype: 'tmpfs', target: join(dir, 'missing') }).catch(() => {});
      await mountFs({ fstype: 'no-such-fs', target }).catch(() => {});
      await bindMount(src, target, { recursive: true, readOnly: true });
      await unmount(target, ['detach']);
      await bindMount(join(dir, 'missing'), target, { readOnly: true }).catch(() => {});
      await setPropagation(join(dir, 'missing'), 'private').catch(() => {});
    };
    await batch();
    const before = fdCount();
    for (let i = 0; i < 5; i++) await batch();
    expect(fdCount()).to.equal(before);
    expect(mountsBelow(dir)).to.deep.equal([]);
  });

  describe('argument validation', function () {
    it('throws TypeErrors instead of crashing', function () {
      const c = native.mountApiConstants;
      const bad: Array<[string, () => unknown]> = [
        ['fsopen non-string', () => native.fsopen(1 as unknown as string)],
        ['fsopen empty', () => native.fsopen('')],
        ['fsconfig negative fd', () => native.fsconfig(-1, c.FSCONFIG_SET_FLAG!, 'k', null, 0)],
        ['fsconfig unknown cmd', () => native.fsconfig(0, 99, 'k', null, 0)],
        ['fsconfig binary', () => native.fsconfig(0, 2, 'k', 'v', 0)],
        ['fsconfig flag without key', () => native.fsconfig(0, c.FSCONFIG_SET_FLAG!, null, null, 0)],
        ['fsconfig flag with value', () => native.fsconfig(0, c.FSCONFIG_SET_FLAG!, 'k', 'v', 0)],
        ['fsconfig string without value', () => native.fsconfig(0, c.FSCONFIG_SET_STRING!, 'k', null, 0)],
        ['fsconfig create with key', () => native.fsconfig(0, c.FSCONFIG_CMD_CREATE!, 'k', null, 0)],
        ['fsconfig fd without fd', () => native.fsconfig(0, c.FSCONFIG_SET_FD!, 'k', null, -5)],
        ['fsconfig empty path', () => native.fsconfig(0, c.FSCONFIG_SET_PATH!, 'k', '', c.AT_FDCWD!)],
        ['fsconfig NUL in value', () => native.fsconfig(0, c.FSCONFIG_SET_STRING!, 'k', 'a\0b', 0)],
        ['fsmount unknown attr', () => native.fsmount(0, 1 << 30)],
        ['fsmount idmap', () => native.fsmount(0, 0x00100000)],
        ['moveMount bad dirfd', () => native.moveMount(-2, '', -100, '/tmp', 0)],
        ['moveMount unknown flags', () => native.moveMount(-100, '/a', -100, '/b', 1 << 20)],
        ['openTree fractional flags', () => native.openTree(-100, '/tmp', 0.5)],
        ['openTree unknown flags', () => native.openTree(-100, '/tmp', 1 << 2)],
        ['fspick unknown flags', () => native.fspick(-100, '/tmp', 1 << 5)],
        ['fspick empty path without flag', () => native.fspick(-100, 42 as unknown as string, 0)],
        ['mountSetattr unknown propagation', () => native.mountSetattr(-100, '/tmp', 0, 0, 0, 1, -1)],
        ['mountSetattr idmap without userns', () => native.mountSetattr(-100, '/tmp', 0, 0x00100000, 0, 0, -1)],
        ['mountSetattr userns without idmap', () => native.mountSetattr(-100, '/tmp', 0, 0, 0, 0, 3)],
        ['mountSetattr missing args', () => (native.mountSetattr as unknown as () => unknown)()],
      ];
      for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
    });

    it('rejects conflicting atime modes with a TypeError', async function () {
      const error = await mountSetattr('/', { set: ['noatime', 'strictatime'] }).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(TypeError);
    });
  });
});
