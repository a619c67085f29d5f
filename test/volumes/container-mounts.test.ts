import { expect } from 'chai';
import { chownSync, chmodSync, createReadStream, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { mount, unmount } from '../../lib/native/mount.js';
import { parseMountFlag, parseVolumeFlag } from '../../lib/mounts/spec.js';
import type { Digest } from '../../lib/store/digest.js';
import { Store } from '../../lib/store/store.js';
import { isMountPoint, mountsBelow } from '../../lib/system/mountinfo.js';
import { Cleanups, isRoot, rejection, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { tarOf, writeTree } from '../support/trees.js';


function writeFails(path: string): string | undefined {
  try {
    writeFileSync(path, 'x');
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code;
  }
}

/** The optional fields of a mount point's line in mountinfo (shared:N, master:N). */
function propagationOf(point: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse().find((l) => l.split(' ')[4] === point);
  return line!.split(' - ')[0]!.split(' ').slice(6).join(' ');
}

describe('container mounts', function () {
  const cleanups = new Cleanups();
  let root: string;
  let store: Store;
  let image: Digest;
  let host: string;

  before(function () {
    if (!isRoot) this.skip();
  });

  beforeEach(async function () {
    root = await tmpfsDir(cleanups, '256m');
    host = scratchDir(cleanups, 'host');
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
    const src = scratchDir(cleanups, 'layer');
    writeTree(src, { 'etc/app.conf': 'image config\n', 'data/seed': 'seeded\n', 'data/sub/deep': 'deep\n', 'empty/': '' });
    chownSync(join(src, 'data'), 1234, 5678);
    chmodSync(join(src, 'data'), 0o750);
    chmodSync(join(src, 'data/seed'), 0o640);
    // A link in the image to a host directory: a mount on it must stay inside the rootfs.
    symlinkSync(host, join(src, 'escape'));
    symlinkSync('/etc', join(src, 'etc-link'));
    const tar = tarOf(src, join(scratchDir(cleanups, 'tar'), 'layer.tar'));
    image = (await store.layers.import(createReadStream(tar), { explicit: true })).layer.chainId;
  });

  afterEach(async function () {
    for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true }).catch(() => {});
    await cleanups.release();
  });

  it('records the mounts and mounts volumes, binds and tmpfs inside the rootfs', async function () {
    writeFileSync(join(host, 'from-host'), 'hello');
    const container = await store.containers.create(image, {
      mounts: [
        parseVolumeFlag('/data'),
        parseVolumeFlag('cache:/var/cache'),
        parseMountFlag(`type=bind,source=${host},target=/mnt/host,readonly`),
        parseMountFlag('type=tmpfs,target=/run,tmpfs-size=1m,tmpfs-mode=1770'),
      ],
    });
    const mounts = store.containers.containerMounts(container);
    expect(mounts.map((m) => m.spec.type)).to.deep.equal(['volume', 'volume', 'bind', 'tmpfs']);
    const anonymous = mounts[0]!.volume!;
    expect(anonymous).to.match(/^[0-9a-f]{64}$/);
    expect(mounts[1]!.volume).to.equal('cache');
    expect(store.volumes.users('cache')).to.deep.equal([container.id]);

    const rootfs = await store.containers.mount(container.id);
    // Parents before children: by depth, then in the given order.
    expect(mountsBelow(rootfs)).to.deep.equal([rootfs, `${rootfs}/data`, `${rootfs}/run`, `${rootfs}/var/cache`, `${rootfs}/mnt/host`]);
    // The empty anonymous volume was filled from the image, owners and modes kept.
    const data = store.volumes.get(anonymous)!.mountpoint;
    expect(readFileSync(join(data, 'seed'), 'utf8')).to.equal('seeded\n');
    expect(readFileSync(join(data, 'sub/deep'), 'utf8')).to.equal('deep\n');
    expect(statSync(join(data, 'seed')).mode & 0o777).to.equal(0o640);
    expect(statSync(data)).to.include({ uid: 1234, gid: 5678 });
    expect(statSync(data).mode & 0o777).to.equal(0o750);
    writeFileSync(join(rootfs, 'data/new'), 'written in the container');
    expect(readFileSync(join(data, 'new'), 'utf8')).to.equal('written in the container');
    expect(readFileSync(join(rootfs, 'mnt/host/from-host'), 'utf8')).to.equal('hello');
    expect(writeFails(join(rootfs, 'mnt/host/nope'))).to.equal('EROFS');
    expect(statSync(join(rootfs, 'run')).mode & 0o7777).to.equal(0o1770);
    expect(propagationOf(`${rootfs}/mnt/host`)).to.equal('');

    await store.containers.unmount(container.id);
    expect(mountsBelow(rootfs)).to.deep.equal([]);
    // The data stays in the volume, the rootfs keeps the image's content.
    expect(readFileSync(join(data, 'new'), 'utf8')).to.equal('written in the container');
  });

  it('makes a read-only bind read-only in its submounts too, unless bind-recursive says otherwise', async function () {
    mkdirSync(join(host, 'sub'));
    await mount(join(host, 'sub'), { source: 'tmpfs', fstype: 'tmpfs', data: 'size=1m' });
    cleanups.defer(() => unmount(join(host, 'sub'), ['detach']));
    const container = await store.containers.create(image, {
      mounts: [
        parseMountFlag(`type=bind,source=${host},target=/ro,readonly`),
        parseMountFlag(`type=bind,source=${host},target=/ro-writable-subs,readonly,bind-recursive=writable`),
        parseMountFlag(`type=bind,source=${host},target=/flat,bind-recursive=disabled`),
        parseMountFlag(`type=bind,source=${host},target=/shared,bind-propagation=rshared`),
      ],
    });
    const rootfs = await store.containers.mount(container.id);
    expect(writeFails(join(rootfs, 'ro/top'))).to.equal('EROFS');
    expect(writeFails(join(rootfs, 'ro/sub/file'))).to.equal('EROFS');
    expect(writeFails(join(rootfs, 'ro-writable-subs/top'))).to.equal('EROFS');
    expect(writeFails(join(rootfs, 'ro-writable-subs/sub/file'))).to.equal(undefined);
    expect(isMountPoint(join(rootfs, 'flat/sub'))).to.equal(false);
    expect(readdirSync(join(rootfs, 'flat/sub'))).to.deep.equal([]);
    expect(propagationOf(join(rootfs, 'shared'))).to.match(/^shared:\d+$/);
    expect(propagationOf(join(rootfs, 'shared/sub'))).to.match(/^shared:\d+$/);
    await store.containers.unmount(container.id);
    expect(mountsBelow(rootfs)).to.deep.equal([]);
    expect(readFileSync(join(host, 'sub/file'), 'utf8')).to.equal('x');
  });

  it('resolves targets inside the rootfs: an image symlink to the host is no way out', async function () {
    const container = await store.containers.create(image, {
      mounts: [parseMountFlag('type=tmpfs,target=/escape/inner'), parseMountFlag('type=tmpfs,target=/etc-link/mounted')],
    });
    const rootfs = await store.containers.mount(container.id);
    expect(readdirSync(host)).to.deep.equal([]);
    expect(mountsBelow(host)).to.deep.equal([]);
    expect(isMountPoint(join(rootfs, host, 'inner'))).to.equal(true);
    expect(isMountPoint(join(rootfs, 'etc/mounted'))).to.equal(true);
    expect(isMountPoint('/etc/mounted')).to.equal(false);
    await store.containers.unmount(container.id);
  });

  it('leaves a volume empty with nocopy, and copies only into an empty volume', async function () {
    const full = await store.volumes.create('full');
    writeFileSync(join(full.mountpoint, 'mine'), 'mine');
    const container = await store.containers.create(image, {
      mounts: [parseVolumeFlag('bare:/data:nocopy'), parseMountFlag('source=full,target=/etc')],
    });
    const rootfs = await store.containers.mount(container.id);
    expect(readdirSync(store.volumes.get('bare')!.mountpoint)).to.deep.equal([]);
    expect(readdirSync(join(rootfs, 'etc'))).to.deep.equal(['mine']);
    await store.containers.unmount(container.id);
  });

  it('mounts a volume with options while a container is mounted, and rm -v removes only anonymous volumes', async function () {
    const first = await store.containers.create(image, {
      mounts: [
        parseVolumeFlag('/data'),
        parseMountFlag('type=volume,source=fast,target=/fast,volume-opt=type=tmpfs,volume-opt=device=tmpfs,"volume-opt=o=size=1m"'),
      ],
    });
    const second = await store.containers.create(image, { mounts: [parseVolumeFlag('fast:/fast')] });
    const fast = store.volumes.get('fast')!;
    expect(fast.options).to.deep.equal({ type: 'tmpfs', device: 'tmpfs', o: 'size=1m' });
    await store.containers.mount(first.id);
    await store.containers.mount(second.id);
    expect(store.volumes.get('fast')!.active).to.equal(2);
    await store.containers.unmount(first.id);
    expect(isMountPoint(fast.mountpoint)).to.equal(true);
    await store.containers.unmount(second.id);
    expect(isMountPoint(fast.mountpoint)).to.equal(false);

    const error = await rejection(store.volumes.remove('fast', { force: true }));
    expect(error).to.include({ code: 'ERR_VOLUME_IN_USE', message: `remove fast: volume is in use - [${[first.id, second.id].sort().join(', ')}]` });
    const anonymous = store.containers.containerMounts(first)[0]!.volume!;
    await store.containers.remove(first.id, { volumes: true });
    expect(store.volumes.get(anonymous)).to.equal(undefined);
    expect(store.volumes.get('fast')).to.not.equal(undefined);
    await store.containers.remove(second.id);
    await store.volumes.remove('fast');
  });

  it('keeps an anonymous volume after a plain rm, as dangling', async function () {
    const container = await store.containers.create(image, { mounts: [parseVolumeFlag('/data')] });
    const anonymous = store.containers.containerMounts(container)[0]!.volume!;
    await store.containers.remove(container.id);
    expect(store.volumes.list({ dangling: true }).map((v) => v.name)).to.deep.equal([anonymous]);
  });

  it('creates a missing -v bind source when mounted, but refuses a missing --mount source', async function () {
    const missing = join(host, 'made/by/v');
    const error = await rejection(store.containers.create(image, { mounts: [parseMountFlag(`type=bind,source=${missing},target=/x`)] }));
    expect(error.message).to.equal(`invalid mount config for type "bind": bind source path does not exist: ${missing}`);
    const container = await store.containers.create(image, { mounts: [parseVolumeFlag(`${missing}:/x`)] });
    expect(existsSync(missing)).to.equal(false);
    const rootfs = await store.containers.mount(container.id);
    expect(statSync(missing).isDirectory()).to.equal(true);
    writeFileSync(join(rootfs, 'x/f'), 'through');
    expect(readFileSync(join(missing, 'f'), 'utf8')).to.equal('through');
    await store.containers.unmount(container.id);
  });

  it('binds a file onto a file target it creates', async function () {
    writeFileSync(join(host, 'resolv.conf'), 'nameserver 10.0.0.1\n');
    const container = await store.containers.create(image, { mounts: [parseVolumeFlag(`${host}/resolv.conf:/etc/resolv.conf:ro`)] });
    const rootfs = await store.containers.mount(container.id);
    expect(readFileSync(join(rootfs, 'etc/resolv.conf'), 'utf8')).to.equal('nameserver 10.0.0.1\n');
    expect(lstatSync(join(rootfs, 'etc/resolv.conf')).isFile()).to.equal(true);
    await store.containers.unmount(container.id);
  });

  it('refuses sensitive bind sources unless allowed, other owners\' volumes, and duplicate targets, leaving nothing behind', async function () {
    await store.volumes.create('alice-data', { owner: 'alice' });
    const before = store.volumes.list().map((v) => v.name);
    const cases: Array<[Parameters<typeof store.containers.create>[1], RegExp]> = [
      [{ mounts: [parseVolumeFlag('/data'), parseVolumeFlag('/etc:/host-etc')] }, /^refusing to bind-mount \/etc: \/etc is a sensitive host path/],
      [{ mounts: [parseVolumeFlag('/data'), parseVolumeFlag(`${root}:/store`)] }, /is inside the store root/],
      [{ mounts: [parseVolumeFlag('/data'), parseVolumeFlag('/var/run/docker.sock:/var/run/docker.sock')] }, /container runtime socket/],
      [{ mounts: [parseVolumeFlag('/data'), parseVolumeFlag('/data')] }, /^Duplicate mount point: \/data$/],
      [{ owner: 'bob', mounts: [parseVolumeFlag('/data'), parseVolumeFlag('alice-data:/a')] }, /^volume alice-data belongs to another owner$/],
      [{ mounts: [parseVolumeFlag('/data'), parseMountFlag('source=bad-opts,target=/b,volume-opt=foo=bar')] }, /^invalid option: "foo"$/],
    ];
    for (const [options, message] of cases) {
      const error = await rejection(store.containers.create(image, options));
      expect(error.message).to.match(message);
      expect(store.containers.list()).to.deep.equal([]);
      expect(store.volumes.list().map((v) => v.name)).to.deep.equal(before);
      expect(readdirSync(join(root, 'volumes'))).to.deep.equal(before);
    }
    const allowed = await store.containers.create(image, { allowSensitiveBinds: true, mounts: [parseVolumeFlag('/etc:/host-etc:ro')] });
    const mine = await store.containers.create(image, { owner: 'alice', mounts: [parseVolumeFlag('alice-data:/a')] });
    expect(mine.owner).to.equal('alice');
    const rootfs = await store.containers.mount(allowed.id);
    expect(existsSync(join(rootfs, 'host-etc/hostname')) || existsSync(join(rootfs, 'host-etc/passwd'))).to.equal(true);
    await store.containers.unmount(allowed.id);
  });

  it('checks a bind source again at mount: one swapped for a symlink to /etc after create is refused, and nothing stays mounted', async function () {
    const source = join(host, 'shared');
    mkdirSync(source);
    const container = await store.containers.create(image, { mounts: [parseVolumeFlag(`${source}:/shared`)] });
    rmSync(source, { recursive: true });
    symlinkSync('/etc', source);
    const error = await rejection(store.containers.mount(container.id));
    expect(error.message).to.equal(`refusing to bind-mount ${source}: it now leads to /etc: /etc is a sensitive host path`);
    expect(mountsBelow(root)).to.deep.equal([root]);
    expect(store.containers.get(container.id)!.mounts).to.equal(0);
    // Put back, it mounts.
    rmSync(source);
    mkdirSync(source);
    await store.containers.mount(container.id);
    await store.containers.unmount(container.id);
  });

  it('mounts into a read-only root filesystem, making the missing mount points first', async function () {
    writeFileSync(join(host, 'file.conf'), 'conf');
    const container = await store.containers.create(image, {
      readOnly: true,
      mounts: [parseVolumeFlag('/new/data'), parseVolumeFlag(`${host}/file.conf:/etc/file.conf`), parseMountFlag('type=tmpfs,target=/tmp')],
    });
    const rootfs = await store.containers.mount(container.id);
    expect(writeFails(join(rootfs, 'etc/other'))).to.equal('EROFS');
    expect(writeFails(join(rootfs, 'new/data/ok'))).to.equal(undefined);
    expect(writeFails(join(rootfs, 'tmp/ok'))).to.equal(undefined);
    expect(readFileSync(join(rootfs, 'etc/file.conf'), 'utf8')).to.equal('conf');
    await store.containers.unmount(container.id);
    // The writable view that made the mount points is gone too.
    expect(mountsBelow(root)).to.deep.equal([root]);
  });

  it('repairs use counts on open after a crash, whether the container stayed mounted or not', async function () {
    const spec = parseMountFlag('type=volume,source=opts,target=/o,volume-opt=type=tmpfs,volume-opt=device=tmpfs');
    const kept = await store.containers.create(image, { mounts: [spec] });
    const lost = await store.containers.create(image, { mounts: [parseVolumeFlag('opts:/o')] });
    const keptRootfs = await store.containers.mount(kept.id);
    const lostRootfs = await store.containers.mount(lost.id);
    const volume = store.volumes.get('opts')!;
    // As a crash would leave it: the count off, and one container's mounts gone without an unmount.
    store.db.prepare("UPDATE volumes SET active = 7 WHERE name = 'opts'").run();
    for (const point of mountsBelow(lostRootfs).reverse()) await unmount(point);
    store.close();
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
    expect(store.recovered).to.include(`volume opts: reset a stale use count (7 to 1)`);
    expect(store.volumes.get('opts')!.active).to.equal(1);
    expect(isMountPoint(volume.mountpoint)).to.equal(true);
    await store.containers.unmount(kept.id);
    expect(mountsBelow(keptRootfs)).to.deep.equal([]);
    expect(isMountPoint(volume.mountpoint)).to.equal(false);
    expect(store.volumes.get('opts')!.active).to.equal(0);
  });

  it('unmounts every mount if one of them fails, releasing the volumes', async function () {
    const container = await store.containers.create(image, {
      mounts: [
        parseMountFlag('type=volume,source=opt-vol,target=/a,volume-opt=type=tmpfs,volume-opt=device=tmpfs'),
        // A file where a directory is needed: the bind fails after the volume is mounted.
        parseVolumeFlag(`${host}:/etc/app.conf/below`),
      ],
    });
    const error = await rejection(store.containers.mount(container.id));
    expect(error.code).to.equal('ENOTDIR');
    const rootfs = store.containers.layout(container).merged;
    expect(mountsBelow(rootfs)).to.deep.equal([]);
    expect(store.volumes.get('opt-vol')!.active).to.equal(0);
    expect(isMountPoint(store.volumes.get('opt-vol')!.mountpoint)).to.equal(false);
    expect(store.containers.get(container.id)!.mounts).to.equal(0);
  });
});
