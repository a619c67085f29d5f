// Copy-up strategies: what a container's first write to an image file costs
// under each driver and backing filesystem, and the disk it takes. For each
// run a new container of an image holding a 1 GiB file and 2 x 10,000 small
// files is created and mounted, then: a 1-byte write into the big file, a
// 1-byte write into each of 10,000 small files, a chmod of the other 10,000.
// Baselines, on the same filesystem: the same operations on a plain directory
// (no copy-up), and `cp --reflink=never` of the big file (a full copy).
//
// devicemapper needs the UML guest (the host kernel has no device-mapper):
// the host runs this file there with --guest, at a smaller size (the guest's
// memory holds the pool), and reads back its rows.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { WritableOptions } from '../lib/drivers/driver.js';
import { Store } from '../lib/store/store.js';
import { freshFilesystem, row, stats, usedBytes, type BenchCase, type BenchContext, type BenchFs, type Row } from './support.js';

const MiB = 1024 * 1024;

interface ImageShape {
  bigBytes: number;
  smallFiles: number;
}

const HOST_SHAPE: ImageShape = { bigBytes: 1024 * MiB, smallFiles: 10_000 };
/** The guest keeps the pool in its 3 GiB of memory: a smaller big file (a thin snapshot copies one block whatever the size). */
const GUEST_SHAPE: ImageShape = { bigBytes: 256 * MiB, smallFiles: 10_000 };

const SECTIONS = {
  create: 'container create + mount',
  big: 'first 1-byte write into the big image file',
  small: 'first 1-byte write into each of 10,000 small image files (total)',
  chmod: 'chmod of 10,000 image files',
};

/** Big file, `write/` and `meta/` with `smallFiles` files of 4 KiB each. */
function makeImageTree(dir: string, shape: ImageShape): void {
  mkdirSync(join(dir, 'write'), { recursive: true });
  mkdirSync(join(dir, 'meta'));
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
  const fd = openSync(join(dir, 'big'), 'w');
  for (let written = 0; written < shape.bigBytes; written += chunk.length) {
    chunk.writeUInt32LE(written / MiB, 0); // no two chunks alike
    writeSync(fd, chunk);
  }
  closeSync(fd);
  const small = chunk.subarray(0, 4096);
  for (let i = 0; i < shape.smallFiles; i++) {
    writeFileSync(join(dir, 'write', `f${i}`), small);
    writeFileSync(join(dir, 'meta', `f${i}`), small);
  }
}

const oneByte = Buffer.from('x');

function writeOneByte(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, oneByte, 0, 1, 0);
  } finally {
    closeSync(fd);
  }
}

function elapsed(fn: () => void): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

interface Operations {
  big: number;
  small: number;
  chmod: number;
  /** Bytes allocated on the backing filesystem by each operation. */
  bytes: { big: number; small: number; chmod: number };
}

/** The three operations on a tree, each started with nothing dirty; `used` measures allocated bytes. */
function operate(root: string, shape: ImageShape, used: () => number): Operations {
  const before = used();
  const big = elapsed(() => writeOneByte(join(root, 'big')));
  const afterBig = used();
  const small = elapsed(() => {
    for (let i = 0; i < shape.smallFiles; i++) writeOneByte(join(root, 'write', `f${i}`));
  });
  const afterSmall = used();
  const chmod = elapsed(() => {
    for (let i = 0; i < shape.smallFiles; i++) chmodSync(join(root, 'meta', `f${i}`), 0o600);
  });
  const afterChmod = used();
  return { big, small, chmod, bytes: { big: afterBig - before, small: afterSmall - afterBig, chmod: afterChmod - afterSmall } };
}

interface Strategy {
  subject: string;
  driver: 'overlay2' | 'btrfs' | 'vfs' | 'devicemapper';
  /** The store's (--storage-opt), so one store per distinct set. */
  driverOptions?: Record<string, string>;
  /** The container's. */
  options: WritableOptions;
}

const overlay2: Strategy[] = [false, true].flatMap((metacopy) =>
  [false, true].map((volatile) => ({
    subject: `overlay2 metacopy=${metacopy ? 'on' : 'off'} volatile=${volatile ? 'on' : 'off'}`,
    driver: 'overlay2' as const,
    options: { metacopy, volatile },
  })),
);

const vfsCopy = (copy: 'reflink' | 'copy'): Strategy => ({ subject: `vfs vfs.copy=${copy}`, driver: 'vfs', driverOptions: { 'vfs.copy': copy }, options: {} });

/**
 * What runs on each backing filesystem: vfs reflinks only where the
 * filesystem shares extents (not ext4); the btrfs driver only on btrfs, last,
 * as the quotas it turns on would slow the others down.
 */
function strategiesOn(fs: BenchFs): Strategy[] {
  if (fs === 'ext4') return [...overlay2, vfsCopy('copy')];
  const btrfs: Strategy[] = fs === 'btrfs' ? [{ subject: 'btrfs (subvolume snapshot)', driver: 'btrfs', options: {} }] : [];
  return [...overlay2, vfsCopy('reflink'), vfsCopy('copy'), ...btrfs];
}

interface Samples {
  create: number[];
  big: number[];
  small: number[];
  chmod: number[];
  bytes: { create: number[]; big: number[]; small: number[]; chmod: number[] };
}

const emptySamples = (): Samples => ({ create: [], big: [], small: [], chmod: [], bytes: { create: [], big: [], small: [], chmod: [] } });

function record(samples: Samples, ops: Operations): void {
  for (const key of ['big', 'small', 'chmod'] as const) {
    samples[key].push(ops[key]);
    samples.bytes[key].push(ops.bytes[key]);
  }
}

/** Tars `src` straight into the store as one layer. */
async function importTree(store: Store, src: string) {
  const tar = spawn('tar', ['--numeric-owner', '-C', src, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => tar.once('exit', resolve));
  const { layer } = await store.layers.import(tar.stdout, { explicit: true });
  if ((await exited) !== 0) throw new Error(`tar -c of ${src} failed`);
  return layer.chainId;
}

interface Setting {
  fs: string;
  shape: ImageShape;
  runs: number;
  log: (message: string) => void;
}

/** Runs each strategy of one driver `runs` times on the store `open` opens, a new container per run; `used` syncs the rootfs given. */
async function measureDriver(
  setting: Setting,
  strategies: readonly Strategy[],
  open: () => Promise<Store>,
  src: string,
  used: (rootfs?: string) => number,
): Promise<Map<Strategy, Samples>> {
  const store = await open();
  const results = new Map<Strategy, Samples>();
  try {
    const image = await importTree(store, src);
    for (const strategy of strategies) {
      const samples = emptySamples();
      for (let run = 0; run < setting.runs; run++) {
        const before = used();
        let rootfs = '';
        const created = await timeAsync(async () => {
          const container = await store.containers.create(image, strategy.options);
          rootfs = await store.containers.mount(container.id);
        });
        samples.create.push(created);
        samples.bytes.create.push(used(rootfs) - before);
        record(samples, operate(rootfs, setting.shape, () => used(rootfs)));
        for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true });
      }
      setting.log(`copy-up: ${setting.fs}, ${strategy.subject}: big write ${stats(samples.big).median.toFixed(1)} ms, ${setting.shape.smallFiles} writes ${stats(samples.small).median.toFixed(0)} ms`);
      results.set(strategy, samples);
    }
  } finally {
    await store.shutdown();
  }
  return results;
}

async function timeAsync(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** The floor: the same operations on a plain copy of the tree, and a full copy of the big file. */
function measureBaseline(setting: Setting, work: string, src: string, used: () => number) {
  const plain = emptySamples();
  const copies: number[] = [];
  const copyBytes: number[] = [];
  for (let run = 0; run < setting.runs; run++) {
    const dir = join(work, `plain-${run}`);
    execFileSync('cp', ['-a', '--reflink=never', src, dir]);
    record(plain, operate(dir, setting.shape, used));
    rmSync(dir, { recursive: true });
    const before = used();
    const copy = join(work, `copy-${run}`);
    copies.push(elapsed(() => execFileSync('cp', ['--reflink=never', join(src, 'big'), copy])));
    copyBytes.push(used() - before);
    rmSync(copy);
  }
  return { plain, copy: stats(copies), copyBytes: stats(copyBytes).median };
}

/** Rows for one filesystem's strategies against its baseline. */
function rowsOf(
  setting: Setting,
  caseName: string,
  baseline: ReturnType<typeof measureBaseline>,
  measured: Map<Strategy, Samples>,
): Row[] {
  const { fs } = setting;
  const bigLabel = `${SECTIONS.big} (${setting.shape.bigBytes / MiB} MiB)`;
  const plainBase = (key: 'small' | 'chmod') => ({ baseline: 'plain directory', base: stats(baseline.plain[key]) });
  const rows: Row[] = [];
  const median = (values: number[]) => stats(values).median;
  for (const [strategy, s] of measured) {
    const common = { case: caseName, fs, subject: strategy.subject, unit: 'ms' as const };
    rows.push(row({ ...common, section: SECTIONS.create, value: stats(s.create), bytesUsed: median(s.bytes.create) }));
    rows.push(row({ ...common, section: bigLabel, value: stats(s.big), baseline: 'cp --reflink=never of the file', base: baseline.copy, bytesUsed: median(s.bytes.big) }));
    rows.push(row({ ...common, section: SECTIONS.small, value: stats(s.small), ...plainBase('small'), bytesUsed: median(s.bytes.small), note: `${(median(s.small) / setting.shape.smallFiles * 1000).toFixed(1)} µs per file` }));
    rows.push(row({ ...common, section: SECTIONS.chmod, value: stats(s.chmod), ...plainBase('chmod'), bytesUsed: median(s.bytes.chmod) }));
  }
  const floor = { case: caseName, fs, unit: 'ms' as const };
  rows.push(row({ ...floor, section: bigLabel, subject: 'plain directory (no copy-up)', value: stats(baseline.plain.big), bytesUsed: median(baseline.plain.bytes.big) }));
  rows.push(row({ ...floor, section: bigLabel, subject: 'cp --reflink=never of the file', value: baseline.copy, bytesUsed: baseline.copyBytes }));
  rows.push(row({ ...floor, section: SECTIONS.small, subject: 'plain directory (no copy-up)', value: stats(baseline.plain.small), bytesUsed: median(baseline.plain.bytes.small) }));
  rows.push(row({ ...floor, section: SECTIONS.chmod, subject: 'plain directory (no copy-up)', value: stats(baseline.plain.chmod), bytesUsed: median(baseline.plain.bytes.chmod) }));
  return rows;
}

/** Rows sorted so each section's table lists every filesystem together. */
function bySection(rows: Row[]): Row[] {
  const order = [...new Set(rows.map((r) => r.section))];
  return [...rows].sort((a, b) => order.indexOf(a.section) - order.indexOf(b.section));
}

async function measureHostFs(fs: BenchFs, context: BenchContext, runs: number): Promise<Row[]> {
  const setting: Setting = { fs, shape: HOST_SHAPE, runs, log: context.log };
  const measured = new Map<Strategy, Samples>();
  const strategies = strategiesOn(fs);
  const scratch = await freshFilesystem(fs, 12);
  try {
    const src = join(scratch.dir, 'src');
    makeImageTree(src, HOST_SHAPE);
    const used = () => usedBytes(scratch.dir);
    const baseline = measureBaseline(setting, scratch.dir, src, used);
    // A store per driver and options, each with its own copy of the image.
    const stores = new Map<string, Strategy[]>();
    for (const s of strategies) {
      const key = JSON.stringify([s.driver, s.driverOptions ?? {}]);
      stores.set(key, [...(stores.get(key) ?? []), s]);
    }
    for (const [index, group] of [...stores.values()].entries()) {
      const { driver, driverOptions } = group[0]!;
      const open = () => Store.open({ root: join(scratch.dir, `strata-${index}`), driver, driverOptions: driverOptions ?? {} });
      for (const [strategy, samples] of await measureDriver(setting, group, open, src, used)) measured.set(strategy, samples);
    }
    return rowsOf(setting, 'copy-up', baseline, measured);
  } finally {
    await scratch.release();
  }
}

export const copyUp: BenchCase = {
  name: 'copy-up',
  about: 'first writes and chmods into image files: overlay2 (metacopy, volatile), btrfs, vfs (reflink, plain copy) on ext4, xfs, btrfs',
  needs: ['mkfs.ext4', 'mkfs.xfs', 'mkfs.btrfs', 'tar', 'cp'],
  async run(context) {
    const runs = context.runs ?? 3;
    const rows: Row[] = [];
    for (const fs of ['ext4', 'xfs', 'btrfs'] as const) rows.push(...(await measureHostFs(fs, context, runs)));
    return bySection(rows);
  },
};

/** In the guest: devicemapper (loop-lvm on the guest's tmpfs) against a plain ext4 directory. */
async function measureInGuest(runs: number): Promise<Row[]> {
  const fs = '6.1 guest (UML), ext4';
  const setting: Setting = { fs, shape: GUEST_SHAPE, runs, log: (message) => console.error(message) };
  const scratch = await freshFilesystem('ext4', 2);
  const poolRoot = await freshFilesystem('tmpfs', 3);
  try {
    const src = join(scratch.dir, 'src');
    makeImageTree(src, GUEST_SHAPE);
    const baseline = measureBaseline(setting, scratch.dir, src, () => usedBytes(scratch.dir));
    const driverOptions = { 'dm.basesize': '1G', 'dm.loopdatasize': '3G', 'dm.loopmetadatasize': '128M' };
    const open = () => Store.open({ root: join(poolRoot.dir, 'strata'), driver: 'devicemapper', driverOptions });
    // The pool's loop files live on the tmpfs: what the thin devices write out shows there.
    const used = (rootfs?: string) => {
      if (rootfs) execFileSync('sync', ['-f', rootfs]);
      return usedBytes(poolRoot.dir);
    };
    const strategy: Strategy = { subject: 'devicemapper (thin snapshot, 64 KiB blocks, ext4 in it)', driver: 'devicemapper', options: {} };
    const measured = await measureDriver(setting, [strategy], open, src, used);
    return bySection(rowsOf(setting, 'copy-up-devicemapper', baseline, measured));
  } finally {
    await poolRoot.release();
    await scratch.release();
  }
}

const self = fileURLToPath(import.meta.url);
const projectRoot = join(import.meta.dirname, '..');

export const copyUpDevicemapper: BenchCase = {
  name: 'copy-up-devicemapper',
  about: `copy-up on devicemapper, in the 6.1 UML guest (big file scaled to ${GUEST_SHAPE.bigBytes / MiB} MiB)`,
  needs: ['vm', 'mkfs.ext4', 'tar', 'cp'],
  async run(context) {
    const runs = context.runs ?? 3;
    const out = join(projectRoot, 'bench/out/copy-up-devicemapper.json');
    mkdirSync(join(projectRoot, 'bench/out'), { recursive: true });
    rmSync(out, { force: true });
    context.log('copy-up-devicemapper: booting the UML guest (scripts/vm-run)');
    execFileSync(
      join(projectRoot, 'scripts/vm-run'),
      ['--mem', '4G', '--timeout', '1800', '--', process.execPath, '--import', 'tsx', relative(projectRoot, self), '--guest', String(runs), out],
      { cwd: projectRoot, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    return JSON.parse(readFileSync(out, 'utf8')) as Row[];
  },
};

if (process.argv[1] === self && process.argv[2] === '--guest') {
  const [, , , runs, out] = process.argv;
  writeFileSync(out!, JSON.stringify(await measureInGuest(Number(runs))));
}
