import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, createReadStream, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';

import { setXattrSync } from '../../lib/native/fs.js';
import { sha256, type Digest } from '../../lib/store/digest.js';
import { Store } from '../../lib/store/store.js';
import { isMountPoint, mountPoints } from '../../lib/system/mountinfo.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { inVm } from '../support/vm.js';
import { tarOf, treeDigest, writeTree } from '../support/trees.js';


describe('container layers on overlay2', function () {
  const cleanups = new Cleanups();
  let root: string;
  let work: string;
  let store: Store;
  let image: Digest;

  before(function () {
    if (!isRoot) this.skip();
  });

  async function importLayer(files: Record<string, string>, parent: Digest | null): Promise<Digest> {
    const src = scratchDir(cleanups, 'src');
    writeTree(src, files);
    const tar = tarOf(src, join(work, `${Math.random().toString(36).slice(2)}.tar`));
    return (await store.layers.import(createReadStream(tar), { parent, explicit: true })).layer.chainId;
  }

  beforeEach(async function () {
    root = await tmpfsDir(cleanups, '512m');
    work = scratchDir(cleanups, 'work');
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
    const base = await importLayer({ 'etc/hosts': '127.0.0.1 localhost\n', 'etc/motd': 'base\n', 'usr/lib/a': 'a', 'usr/lib/b': 'b', 'data/keep': 'k', 'data/drop': 'd' }, null);
    image = await importLayer({ 'etc/motd': 'top\n', 'opt/app/run.sh': '#!/bin/sh\n' }, base);
  });
  afterEach(async function () {
    for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true }).catch(() => {});
    await cleanups.release();
  });

  it('mounts the image read-only below a writable layer; writes land in the container only', async function () {
    const lowers = store.layers.chainDirs(image);
    const before = lowers.map(treeDigest);
    const a = await store.containers.create(image, { name: 'a' });
    const b = await store.containers.create(image);
    const rootA = await store.containers.mount('a');
    const rootB = await store.containers.mount(b.id);

    expect(readFileSync(join(rootA, 'etc/motd'), 'utf8')).to.equal('top\n');
    writeFileSync(join(rootA, 'etc/hosts'), 'changed\n');
    rmSync(join(rootA, 'usr/lib/a'));
    writeFileSync(join(rootA, 'new'), 'n');

    expect(readFileSync(join(store.containers.layout(a).upper, 'etc/hosts'), 'utf8')).to.equal('changed\n');
    expect(readFileSync(join(rootB, 'etc/hosts'), 'utf8')).to.equal('127.0.0.1 localhost\n');
    expect(existsSync(join(rootB, 'usr/lib/a'))).to.equal(true);
    expect(existsSync(join(rootB, 'new'))).to.equal(false);
    expect(lowers.map(treeDigest)).to.deep.equal(before);
  });

  for (const metacopy of [false, true]) {
    it(`lists A/C/D changes from the upper dir (metacopy ${metacopy ? 'on' : 'off'})`, async function () {
      const c = await store.containers.create(image, { metacopy, redirectDir: metacopy });
      const rootfs = await store.containers.mount(c.id);
      chmodSync(join(rootfs, 'usr/lib/b'), 0o600); // metadata only: a metacopy when on
      writeFileSync(join(rootfs, 'etc/hosts'), 'changed\n');
      rmSync(join(rootfs, 'usr/lib/a'));
      mkdirSync(join(rootfs, 'srv'));
      writeFileSync(join(rootfs, 'srv/new'), 'n');
      rmSync(join(rootfs, 'data'), { recursive: true });
      mkdirSync(join(rootfs, 'data'));
      writeFileSync(join(rootfs, 'data/keep'), 'again');
      const upperB = join(store.containers.layout(c).upper, 'usr/lib/b');
      // A metacopy upper file keeps the size but no data blocks.
      expect(lstatSync(upperB).blocks === 0, 'metacopy keeps no data in the upper file').to.equal(metacopy);
      expect(await store.containers.changes(c.id)).to.deep.equal([
        { kind: 'C', path: '/data' },
        { kind: 'D', path: '/data/drop' },
        { kind: 'C', path: '/data/keep' },
        { kind: 'C', path: '/etc' },
        { kind: 'C', path: '/etc/hosts' },
        { kind: 'A', path: '/srv' },
        { kind: 'A', path: '/srv/new' },
        { kind: 'C', path: '/usr' },
        { kind: 'C', path: '/usr/lib' },
        { kind: 'D', path: '/usr/lib/a' },
        { kind: 'C', path: '/usr/lib/b' },
      ]);
    });
  }

  it('lists a renamed directory (redirect_dir) as deleted at its old path and added at its new one', async function () {
    const c = await store.containers.create(image, { redirectDir: true });
    const rootfs = await store.containers.mount(c.id);
    renameSync(join(rootfs, 'usr/lib'), join(rootfs, 'usr/lib64'));
    expect(await store.containers.changes(c.id)).to.deep.equal([
      { kind: 'C', path: '/usr' },
      { kind: 'D', path: '/usr/lib' },
      { kind: 'A', path: '/usr/lib64' },
      { kind: 'A', path: '/usr/lib64/a' },
      { kind: 'A', path: '/usr/lib64/b' },
    ]);
    await store.containers.unmount(c.id);
    expect(await store.containers.changes(c.id), 'the same when unmounted (a read-only view is mounted)').to.have.length(5);
  });

  it('commits changes to a layer that equals exporting the diff and importing it', async function () {
    const c = await store.containers.create(image, { redirectDir: true });
    const rootfs = await store.containers.mount(c.id);
    writeFileSync(join(rootfs, 'etc/hosts'), 'committed\n');
    rmSync(join(rootfs, 'usr/lib/a'));
    renameSync(join(rootfs, 'opt/app'), join(rootfs, 'opt/service'));
    writeFileSync(join(rootfs, 'big'), Buffer.alloc(3_000_000, 7));
    await store.containers.unmount(c.id);

    const { layer } = await store.containers.commit(c.id);
    expect(layer.parent).to.equal(image);
    const exported = await buffer(store.layers.export(layer.chainId));
    expect(sha256(exported)).to.equal(layer.diffId);
    const names = execFileSync('tar', ['-t'], { input: exported }).toString().trim().split('\n');
    expect(names).to.include.members(['etc/hosts', 'usr/lib/.wh.a', 'opt/.wh.app', 'opt/service/run.sh', 'big']);

    // A container on the committed layer sees exactly what the first one did.
    const d = await store.containers.create(layer.chainId);
    const rootD = await store.containers.mount(d.id);
    expect(readFileSync(join(rootD, 'etc/hosts'), 'utf8')).to.equal('committed\n');
    expect(existsSync(join(rootD, 'usr/lib/a'))).to.equal(false);
    expect(readFileSync(join(rootD, 'opt/service/run.sh'), 'utf8')).to.equal('#!/bin/sh\n');
    expect(existsSync(join(rootD, 'opt/app'))).to.equal(false);
  });

  it('commits an unmounted container in place: the upper directory becomes the layer, no data copied', async function () {
    const c = await store.containers.create(image);
    const rootfs = await store.containers.mount(c.id);
    writeFileSync(join(rootfs, 'big'), Buffer.alloc(5_000_000, 3));
    rmSync(join(rootfs, 'usr/lib/a'));
    await store.containers.unmount(c.id);
    const inode = lstatSync(join(store.containers.layout(c).upper, 'big')).ino;

    const { layer, existed } = await store.containers.commit(c.id);
    expect(existed).to.equal(false);
    expect(lstatSync(join(store.layers.chainDirs(layer.chainId)[0]!, 'big')).ino, 'the same file, moved').to.equal(inode);
    expect(sha256(await buffer(store.layers.export(layer.chainId)))).to.equal(layer.diffId);
    // The container now sits on its commit: same tree, nothing left to diff.
    expect(store.containers.get(c.id)!.layer).to.equal(layer.chainId);
    expect(await store.containers.changes(c.id)).to.deep.equal([]);
    const again = await store.containers.mount(c.id);
    expect(readFileSync(join(again, 'big')).length).to.equal(5_000_000);
    expect(existsSync(join(again, 'usr/lib/a'))).to.equal(false);
    expect(store.db.prepare('SELECT count(*) AS n FROM adoptions').get()).to.deep.equal({ n: 0 });
  });

  it('gives the same layer whether it commits by streaming (mounted) or in place', async function () {
    const c = await store.containers.create(image);
    const rootfs = await store.containers.mount(c.id);
    writeFileSync(join(rootfs, 'etc/hosts'), 'both ways\n');
    mkdirSync(join(rootfs, 'srv'));
    writeFileSync(join(rootfs, 'srv/f'), 'f');
    const streamed = await store.containers.commit(c.id); // mounted: streamed, the container keeps its diff
    expect(store.containers.get(c.id)!.layer).to.equal(image);
    await store.containers.unmount(c.id);
    const inPlace = await store.containers.commit(c.id);
    expect(inPlace.existed).to.equal(true);
    expect(inPlace.layer.chainId).to.equal(streamed.layer.chainId);
    expect(await store.containers.changes(c.id)).to.deep.equal([]);
  });

  it('writes the same tar in place as streamed: hardlinks, symlinks, xattrs, whiteouts, long names, large and empty files', async function () {
    const c = await store.containers.create(image);
    const rootfs = await store.containers.mount(c.id);
    const long = `deep/${'d'.repeat(90)}/${'n'.repeat(120)}`;
    mkdirSync(join(rootfs, long), { recursive: true });
    writeFileSync(join(rootfs, long, 'file'), 'under a long name\n');
    writeFileSync(join(rootfs, 'big'), Buffer.from(Array.from({ length: 3_000_001 }, (_, i) => (i * 7) % 251)));
    writeFileSync(join(rootfs, 'empty'), '');
    writeFileSync(join(rootfs, 'etc/hosts'), 'changed\n');
    execFileSync('ln', [join(rootfs, 'etc/hosts'), join(rootfs, 'hosts-link')]);
    symlinkSync('../etc/hosts', join(rootfs, 'opt/hosts'));
    setXattrSync(join(rootfs, 'empty'), 'trusted.strata-test', Buffer.from([0, 1, 2, 255]));
    rmSync(join(rootfs, 'usr/lib/a'));
    rmSync(join(rootfs, 'data'), { recursive: true });

    const streamed = await store.containers.commit(c.id); // mounted: streamed
    const tar = await buffer(store.layers.export(streamed.layer.chainId));
    expect(sha256(tar)).to.equal(streamed.layer.diffId);
    await store.layers.remove(streamed.layer.chainId);
    await store.containers.unmount(c.id);

    const inPlace = await store.containers.commit(c.id);
    expect(inPlace.existed).to.equal(false);
    expect(inPlace.layer.diffId).to.equal(streamed.layer.diffId);
    expect((await buffer(store.layers.export(inPlace.layer.chainId))).equals(tar), 'the export is byte-exact').to.equal(true);
    const names = execFileSync('tar', ['-t'], { input: tar, maxBuffer: 1 << 26 }).toString().trim().split('\n');
    expect(names).to.include.members(['big', 'empty', 'hosts-link', 'opt/hosts', 'usr/lib/.wh.a', '.wh.data', `${long}/file`]);
  });

  it('counts mounts: the last unmount detaches', async function () {
    const c = await store.containers.create(image);
    const first = await store.containers.mount(c.id);
    const second = await store.containers.mount(c.id);
    expect(second).to.equal(first);
    await store.containers.unmount(c.id);
    expect(isMountPoint(first)).to.equal(true);
    await store.containers.unmount(c.id);
    expect(isMountPoint(first)).to.equal(false);
  });

  it('mounts once for calls made together, and breaks a mount claim that a process which is gone left', async function () {
    const c = await store.containers.create(image);
    const [rootfs] = await Promise.all([1, 2, 3].map(() => store.containers.mount(c.id)));
    expect(mountPoints().filter((point) => point === rootfs)).to.have.length(1);
    expect(store.containers.get(c.id)!.mounts).to.equal(3);
    // The claim of a process that died mid-mount, whose pid is ours now (its start time differs).
    store.db.prepare('INSERT INTO container_claims (container, pid, pid_start) VALUES (?, ?, ?)').run(c.id, process.pid, 'gone');
    await Promise.all([1, 2, 3].map(() => store.containers.unmount(c.id)));
    expect(isMountPoint(rootfs!)).to.equal(false);
    expect(store.containers.get(c.id)!.mounts).to.equal(0);
  });

  it('reports sizes from the writable layer and the layers below', async function () {
    const c = await store.containers.create(image);
    const rootfs = await store.containers.mount(c.id);
    writeFileSync(join(rootfs, 'blob'), Buffer.alloc(10_000));
    const layers = store.layers.get(image)!.size + store.layers.get(store.layers.get(image)!.parent!)!.size;
    expect(await store.containers.size(c.id)).to.deep.equal({ sizeRw: 10_000, sizeRootFs: 10_000 + layers });
  });

  it('removes a mounted container, and names the process that keeps a busy one', async function () {
    const c = await store.containers.create(image);
    const rootfs = await store.containers.mount(c.id);
    const holder = spawn('sleep', ['60'], { cwd: rootfs });
    cleanups.defer(() => holder.kill());
    await new Promise((resolve) => holder.once('spawn', resolve));
    const error = await store.containers.remove(c.id).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_CONTAINER_BUSY' });
    expect((error as Error).message).to.include(`sleep (pid ${holder.pid})`);
    holder.kill();
    await new Promise((resolve) => holder.once('close', resolve));
    await store.containers.remove(c.id);
    expect(existsSync(store.containers.layout(c).upper)).to.equal(false);
    expect(store.layers.get(image)!.refs).to.equal(1);
  });

  it('keeps the image layers when a container is removed, and refuses to remove a layer a container uses', async function () {
    const c = await store.containers.create(image);
    const error = await store.layers.remove(image).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_LAYER_IN_USE' });
    expect((error as Error).message).to.include(`container ${c.id.slice(0, 12)}`);
    await store.containers.remove(c.id);
    expect(store.layers.get(image)).to.not.equal(undefined);
  });

  it('discards a volatile writable layer after an unclean shutdown, and keeps it after a clean unmount', async function () {
    const c = await store.containers.create(image, { volatile: true });
    let rootfs = await store.containers.mount(c.id);
    writeFileSync(join(rootfs, 'kept'), 'k');
    await store.containers.unmount(c.id);
    rootfs = await store.containers.mount(c.id);
    expect(readFileSync(join(rootfs, 'kept'), 'utf8')).to.equal('k');
    writeFileSync(join(rootfs, 'lost'), 'l');
    // A crash: the mount vanishes without our unmount.
    execFileSync('umount', ['-l', rootfs]);
    store.close();
    store = await Store.open({ root });
    expect(store.recovered.join('\n')).to.match(/discarded its volatile writable layer/);
    rootfs = await store.containers.mount(c.id);
    expect(existsSync(join(rootfs, 'kept'))).to.equal(false);
    expect(existsSync(join(rootfs, 'lost'))).to.equal(false);
  });

  it('mounts a read-only container', async function () {
    const c = await store.containers.create(image, { readOnly: true });
    const rootfs = await store.containers.mount(c.id);
    expect(() => writeFileSync(join(rootfs, 'x'), 'x')).to.throw().with.property('code', 'EROFS');
  });

  it('gives clear errors for unknown, duplicate and invalid names', async function () {
    await store.containers.create(image, { name: 'web' });
    expect(() => store.containers.resolve('nope')).to.throw(/no such container: nope/);
    const dup = await store.containers.create(image, { name: 'web' }).catch((e: unknown) => e);
    expect(dup).to.include({ code: 'ERR_NAME_IN_USE' });
    const bad = await store.containers.create(image, { name: '../x' }).catch((e: unknown) => e);
    expect(bad).to.include({ code: 'ERR_INVALID_NAME' });
    expect(store.containers.list()).to.have.length(1);
    expect(readdirSync(join(root, 'overlay2'))).to.have.length(3); // two layers, one container
  });

  it('mounts a 500-layer image and reads every layer', async function () {
    // About 15 s here; in the VM (one CPU, slow syscalls) 150 s or more.
    this.timeout(inVm ? 900_000 : 300_000);
    let top: Digest | null = null;
    for (let i = 0; i < 500; i++) top = await importLayer({ [`layers/${i}`]: String(i), shadowed: String(i) }, top);
    const c = await store.containers.create(top!);
    const rootfs = await store.containers.mount(c.id);
    expect(readdirSync(join(rootfs, 'layers'))).to.have.length(500);
    expect(readFileSync(join(rootfs, 'layers/0'), 'utf8')).to.equal('0');
    expect(readFileSync(join(rootfs, 'shadowed'), 'utf8')).to.equal('499');
  });
});
