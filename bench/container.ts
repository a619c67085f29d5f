// Container layers on overlay2, against their physical floor: create + mount
// through the API vs a bare overlay mount(2) of the same directories, and vs
// that mount plus the one flush a durable create needs; and the disk each of
// 1,000 containers of one image costs beyond its own changes.
// On btrfs: container create vs `btrfs subvolume snapshot` of the image's top
// layer, and vs the bare snapshot ioctl.
import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { snapshotSubvolume } from '../lib/native/btrfs.js';
import { mountOverlay } from '../lib/native/overlay.js';
import { unmount } from '../lib/native/mount.js';
import type { Digest } from '../lib/store/digest.js';
import { Store } from '../lib/store/store.js';
import { freshFilesystem, row, stats, time, usedBytes, type BenchCase, type BenchFs, type Row } from './support.js';

async function sixLayerImage(store: Store, work: string): Promise<Digest> {
  let top: Digest | null = null;
  for (let i = 0; i < 6; i++) {
    const src = join(work, `layer${i}`);
    mkdirSync(join(src, `dir${i}`), { recursive: true });
    for (let f = 0; f < 50; f++) writeFileSync(join(src, `dir${i}`, `f${f}`), `layer ${i} file ${f}\n`);
    const tar = execFileSync('tar', ['-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
    top = (await store.layers.import(Readable.from([tar]), { parent: top, explicit: true })).layer.chainId;
  }
  return top!;
}

async function createAndMount(fsType: BenchFs, runs: number): Promise<Row[]> {
  const scratch = await freshFilesystem(fsType);
  try {
    const store = await Store.open({ root: join(scratch.dir, 'root') });
    const image = await sixLayerImage(store, join(scratch.dir, 'work'));
    const lowers = store.layers.chainDirs(image);

    const api = await time(async () => {
      const c = await store.containers.create(image);
      await store.containers.mount(c.id);
    }, runs);

    // The floor: overlay mount(2) of the same layers on directories made beforehand.
    const bareDirs: string[] = [];
    for (let i = 0; i < runs + 2; i++) {
      const dir = join(scratch.dir, 'bare', String(i));
      for (const sub of ['upper', 'work', 'merged']) mkdirSync(join(dir, sub), { recursive: true });
      bareDirs.push(dir);
    }
    for (let i = 0; i < runs + 2; i++) {
      const dir = join(scratch.dir, 'durable', String(i));
      for (const sub of ['upper', 'work', 'merged']) mkdirSync(join(dir, sub), { recursive: true });
      bareDirs.push(dir);
    }
    let next = 0;
    const bareMount = () => {
      const dir = bareDirs[next++]!;
      return mountOverlay(join(dir, 'merged'), { lowers, upper: join(dir, 'upper'), work: join(dir, 'work'), index: false });
    };
    const bare = await time(bareMount, runs);

    // What durability costs by itself: a create that survives a crash makes at
    // least one write and fdatasync on this filesystem (SQLite's WAL commit is one).
    const fd = openSync(join(scratch.dir, 'flush'), 'w');
    const page = Buffer.alloc(4096, 1);
    const flush = () => {
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
    };
    const flushed = await time(flush, runs);
    const durableFloor = await time(async () => {
      await bareMount();
      flush();
    }, runs);
    closeSync(fd);

    for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true });
    for (const dir of bareDirs) await unmount(join(dir, "merged"));
    store.close();
    const common = { case: 'container', section: 'container create + mount, 6-layer image (overlay2)', fs: fsType, unit: 'ms' as const };
    return [
      row({ ...common, subject: 'strata create + mount (API)', value: api, baseline: 'bare overlay mount(2)', base: bare }),
      row({ ...common, subject: 'strata create + mount (API), against the durable floor', value: api, baseline: 'bare mount(2) + 4 KiB write + fdatasync', base: durableFloor }),
      row({ ...common, subject: 'bare overlay mount(2) of prepared directories', value: bare }),
      row({ ...common, subject: '4 KiB write + fdatasync', value: flushed }),
    ];
  } finally {
    await scratch.release();
  }
}

async function btrfsCreate(runs: number): Promise<Row[]> {
  const scratch = await freshFilesystem('btrfs');
  try {
    const store = await Store.open({ root: join(scratch.dir, 'root'), driver: 'btrfs' });
    const image = await sixLayerImage(store, join(scratch.dir, 'work'));
    const top = store.layers.chainDirs(image)[0]!;
    const api = await time(() => store.containers.create(image), runs);
    const snapshots = join(scratch.dir, 'snapshots');
    mkdirSync(snapshots);
    let next = 0;
    const cli = await time(() => execFileSync('btrfs', ['-q', 'subvolume', 'snapshot', top, join(snapshots, `cli${next++}`)]), runs);
    const ioctl = await time(() => snapshotSubvolume(top, join(snapshots, `ioctl${next++}`)), runs);
    for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true });
    store.close();
    const common = { case: 'container', section: 'container create, 6-layer image (btrfs)', fs: 'btrfs' as const, unit: 'ms' as const };
    return [
      row({ ...common, subject: 'strata create (API)', value: api, baseline: 'btrfs subvolume snapshot', base: cli }),
      row({ ...common, subject: 'btrfs subvolume snapshot of the top layer', value: cli }),
      row({ ...common, subject: 'strata create (API), against the bare ioctl', value: api, baseline: 'snapshot ioctl', base: ioctl }),
      row({ ...common, subject: 'BTRFS_IOC_SNAP_CREATE_V2 of the top layer', value: ioctl }),
    ];
  } finally {
    await scratch.release();
  }
}

async function diskPerContainer(fsType: BenchFs, count: number): Promise<Row[]> {
  const scratch = await freshFilesystem(fsType);
  try {
    const store = await Store.open({ root: join(scratch.dir, 'root') });
    const image = await sixLayerImage(store, join(scratch.dir, 'work'));
    const used = () => usedBytes(scratch.dir);
    const before = used();
    for (let i = 0; i < count; i++) await store.containers.create(image);
    const created = used();
    for (const c of store.containers.list()) {
      await store.containers.mount(c.id);
      await store.containers.unmount(c.id);
    }
    const mounted = used();
    store.close();
    const common = { case: 'container', section: `disk per idle container (${count} containers, overlay2)`, fs: fsType, unit: 'bytes' as const };
    return [
      row({ ...common, subject: 'after create', value: stats([(created - before) / count]) }),
      row({ ...common, subject: 'after a mount and unmount', value: stats([(mounted - before) / count]) }),
    ];
  } finally {
    await scratch.release();
  }
}

export const container: BenchCase = {
  name: 'container',
  about: 'container create + mount against a bare overlay mount(2); disk per idle container; btrfs create against a snapshot',
  needs: ['mkfs.ext4', 'mkfs.xfs', 'mkfs.btrfs', 'btrfs', 'tar'],
  async run(context) {
    const rows: Row[] = [];
    for (const fsType of ['ext4', 'xfs'] as const) rows.push(...(await createAndMount(fsType, context.runs ?? 30)));
    for (const fsType of ['ext4', 'xfs'] as const) rows.push(...(await diskPerContainer(fsType, 1000)));
    rows.push(...(await btrfsCreate(context.runs ?? 30)));
    return rows;
  },
};
