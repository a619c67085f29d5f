// What every storage driver must do, run against each on a filesystem it is
// meant for: byte-exact layers, whiteouts, copy-on-write isolation, changes,
// commit, sizes, removal, and recovery from a crash mid-import.
import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';

import { sha256, type Digest } from '../../lib/store/digest.js';
import { Store } from '../../lib/store/store.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { fsImage } from '../support/images.js';
import { tarOf, treeDigest, writeTree } from '../support/trees.js';

interface Setup {
  driver: 'overlay2' | 'vfs' | 'btrfs';
  backing: string;
  root(cleanups: Cleanups): Promise<string>;
}

const setups: Setup[] = [
  { driver: 'overlay2', backing: 'tmpfs', root: (c) => tmpfsDir(c, '1g') },
  { driver: 'vfs', backing: 'xfs (reflink)', root: async (c) => join(await fsImage(c, 'xfs', { size: 1 << 30 }), 'store') },
  { driver: 'btrfs', backing: 'btrfs', root: async (c) => join(await fsImage(c, 'btrfs', { size: 1 << 30 }), 'store') },
];


for (const setup of setups) {
  describe(`driver conformance: ${setup.driver} on ${setup.backing}`, function () {
    const cleanups = new Cleanups();
    let root: string;
    let work: string;
    let store: Store;

    before(function () {
      if (!isRoot) this.skip();
    });
    beforeEach(async function () {
      root = await setup.root(cleanups);
      work = scratchDir(cleanups, 'work');
      store = await Store.open({ root, driver: setup.driver });
      cleanups.defer(() => store.close());
    });
    afterEach(async function () {
      for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true }).catch(() => {});
      await cleanups.release();
    });

    async function importTar(tar: string, parent: Digest | null = null) {
      return (await store.layers.import(createReadStream(tar), { parent, explicit: true })).layer;
    }

    function tree(name: string, files: Record<string, string>, extra: (dir: string) => void = () => {}): string {
      const src = join(work, name);
      writeTree(src, files);
      extra(src);
      return tarOf(src, join(work, `${name}.tar`));
    }

    /** A base layer, and a child deleting a file and replacing a directory's contents (whiteouts). */
    async function twoLayers() {
      const base = await importTar(
        tree('base', { 'etc/hosts': 'h\n', 'etc/passwd': 'root\n', 'lib/a': 'a', 'lib/b': 'b', 'bin/': '' }, (dir) => {
          symlinkSync('../lib/a', join(dir, 'bin/a'));
        }),
      );
      const upperSrc = join(work, 'child');
      mkdirSync(join(upperSrc, 'etc'), { recursive: true });
      mkdirSync(join(upperSrc, 'lib'), { recursive: true });
      writeFileSync(join(upperSrc, 'etc/.wh.passwd'), '');
      writeFileSync(join(upperSrc, 'lib/.wh..wh..opq'), '');
      writeFileSync(join(upperSrc, 'lib/c'), 'c');
      writeFileSync(join(upperSrc, 'etc/hosts'), 'child\n');
      const child = await importTar(tarOf(upperSrc, join(work, 'child.tar')), base.chainId);
      return { base, child };
    }

    it('imports and exports layers byte-exact, whiteouts included', async function () {
      const { base, child } = await twoLayers();
      for (const [layer, tar] of [[base, 'base.tar'], [child, 'child.tar']] as const) {
        const exported = await buffer(store.layers.export(layer.chainId));
        expect(exported.equals(readFileSync(join(work, tar))), tar).to.equal(true);
        expect(sha256(exported)).to.equal(layer.diffId);
      }
    });

    it('shows the layers merged in a container: whiteouts hide, opaque directories replace', async function () {
      const { child } = await twoLayers();
      const c = await store.containers.create(child.chainId);
      const rootfs = await store.containers.mount(c.id);
      expect(readFileSync(join(rootfs, 'etc/hosts'), 'utf8')).to.equal('child\n');
      expect(existsSync(join(rootfs, 'etc/passwd'))).to.equal(false);
      expect(readdirSync(join(rootfs, 'lib')).sort()).to.deep.equal(['c']);
      expect(readlinkSync(join(rootfs, 'bin/a'))).to.equal('../lib/a');
    });

    it('isolates containers of one image, and never changes its layers', async function () {
      const { base, child } = await twoLayers();
      const dirs = store.layers.chainDirs(child.chainId);
      const before = dirs.map(treeDigest);
      const a = await store.containers.create(child.chainId);
      const b = await store.containers.create(child.chainId);
      const rootA = await store.containers.mount(a.id);
      const rootB = await store.containers.mount(b.id);
      writeFileSync(join(rootA, 'etc/hosts'), 'a\n');
      rmSync(join(rootA, 'lib/c'));
      writeFileSync(join(rootA, 'new'), 'n');
      expect(readFileSync(join(rootB, 'etc/hosts'), 'utf8')).to.equal('child\n');
      expect(existsSync(join(rootB, 'lib/c'))).to.equal(true);
      expect(existsSync(join(rootB, 'new'))).to.equal(false);
      expect(dirs.map(treeDigest)).to.deep.equal(before);
      expect(base.refs).to.equal(1);
    });

    it('lists changes, commits them, and sizes the writable layer', async function () {
      const { child } = await twoLayers();
      const c = await store.containers.create(child.chainId);
      const rootfs = await store.containers.mount(c.id);
      writeFileSync(join(rootfs, 'etc/hosts'), 'changed\n');
      rmSync(join(rootfs, 'lib/c'));
      mkdirSync(join(rootfs, 'srv'));
      writeFileSync(join(rootfs, 'srv/data'), Buffer.alloc(5000, 1));
      expect(await store.containers.changes(c.id)).to.deep.equal([
        { kind: 'C', path: '/etc' },
        { kind: 'C', path: '/etc/hosts' },
        { kind: 'C', path: '/lib' },
        { kind: 'D', path: '/lib/c' },
        { kind: 'A', path: '/srv' },
        { kind: 'A', path: '/srv/data' },
      ]);
      const { sizeRw } = await store.containers.size(c.id);
      const written = 'changed\n'.length + 5000;
      // btrfs counts the blocks its qgroup allocated (no tree walk); the others count bytes
      if (setup.driver === 'btrfs') expect(sizeRw).to.be.within(written, written + 256 * 1024);
      else expect(sizeRw).to.equal(written);

      const { layer } = await store.containers.commit(c.id);
      expect(sha256(await buffer(store.layers.export(layer.chainId)))).to.equal(layer.diffId);
      const d = await store.containers.create(layer.chainId);
      const rootD = await store.containers.mount(d.id);
      expect(readFileSync(join(rootD, 'etc/hosts'), 'utf8')).to.equal('changed\n');
      expect(existsSync(join(rootD, 'lib/c'))).to.equal(false);
      expect(readFileSync(join(rootD, 'srv/data')).length).to.equal(5000);
      expect(await store.containers.changes(d.id)).to.deep.equal([]);
    });

    it('commits an unmounted container in place, and the container sits on its commit', async function () {
      const { child } = await twoLayers();
      const c = await store.containers.create(child.chainId);
      const rootfs = await store.containers.mount(c.id);
      writeFileSync(join(rootfs, 'etc/hosts'), 'in place\n');
      rmSync(join(rootfs, 'etc/passwd'), { force: true });
      rmSync(join(rootfs, 'lib/c'));
      await store.containers.unmount(c.id);
      const { layer } = await store.containers.commit(c.id);
      expect(sha256(await buffer(store.layers.export(layer.chainId)))).to.equal(layer.diffId);
      expect(await store.containers.changes(c.id)).to.deep.equal([]);
      const d = await store.containers.create(layer.chainId);
      const rootD = await store.containers.mount(d.id);
      expect(readFileSync(join(rootD, 'etc/hosts'), 'utf8')).to.equal('in place\n');
      expect(existsSync(join(rootD, 'lib/c'))).to.equal(false);
    });

    it('limits the size of a container where the driver can, and refuses where it cannot', async function () {
      const { child } = await twoLayers();
      const attempt = store.containers.create(child.chainId, { sizeLimit: 4 << 20 });
      if (setup.driver !== 'btrfs') {
        expect(await attempt.catch((e: unknown) => e)).to.include({ code: 'ERR_DRIVER_UNSUPPORTED' });
        return;
      }
      const c = await attempt;
      const rootfs = await store.containers.mount(c.id);
      writeFileSync(join(rootfs, 'fits'), Buffer.alloc(1 << 20, 1));
      execFileSync('sync', ['-f', rootfs]);
      expect(() => {
        for (let i = 0; i < 8; i++) {
          writeFileSync(join(rootfs, `more${i}`), Buffer.alloc(1 << 20, 2));
          execFileSync('sync', ['-f', rootfs]);
        }
      }).to.throw(/EDQUOT|Disk quota exceeded|errno -122|UNKNOWN/);
    });

    it('removes containers and unused layers, leaving nothing of them on disk', async function () {
      const driverDir = join(root, setup.driver);
      const empty = new Set(readdirSync(driverDir, { recursive: true }).map(String));
      const { base, child } = await twoLayers();
      const c = await store.containers.create(child.chainId);
      await store.containers.mount(c.id);
      await store.containers.remove(c.id);
      await store.layers.remove(child.chainId);
      await store.layers.remove(base.chainId);
      const left = readdirSync(driverDir, { recursive: true }).map(String).filter((p) => !empty.has(p));
      expect(left.filter((p) => !/^(dir|mnt|subvolumes)$/.test(p))).to.deep.equal([]);
    });

    it('removes what a process killed mid-import left, on the next open', async function () {
      const tar = tree('big', { big: 'q'.repeat(8_000_000) });
      store.close();
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../support/import-child.ts'), root, '-'], {
        env: { ...process.env, STRATA_STORAGE_DRIVER: setup.driver },
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.stdin.on('error', () => {}); // EPIPE once the child is killed mid-write
      child.stdin.write(readFileSync(tar).subarray(0, 4_000_000));
      const staging = () => readdirSync(root, { recursive: true }).map(String).some((p) => p.endsWith('/big'));
      for (let i = 0; i < 500 && !staging(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(staging(), 'the child started writing the layer').to.equal(true);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));
      store = await Store.open({ root, driver: setup.driver });
      expect(store.recovered).to.have.length(1);
      expect(staging()).to.equal(false);
      expect(store.layers.list()).to.deep.equal([]);
      execFileSync('sync');
    });
  });
}
