// Tree copy (the vfs driver's hot path) against `cp -a --reflink=auto`, on
// fresh loop-mounted xfs (reflink=1), btrfs and ext4: ~10,000 small files and
// a few large ones, median of 5 runs with min and max.
// Run as root: scripts/in-private-ns npx tsx bench/tree-copy.ts [runs]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { attachLoop } from '../lib/native/loop.js';
import { mount, unmount } from '../lib/native/mount.js';
import { copyTree, type TreeCopyStats } from '../lib/native/tree.js';

type Fs = 'xfs' | 'btrfs' | 'ext4';

const MiB = 1024 * 1024;
const runs = Number(process.argv[2] ?? 5);
const smallDirs = 100;
const filesPerDir = 100;
const largeFiles = 3;
const largeSize = 64 * MiB;

const mkfs: Record<Fs, string[]> = {
  xfs: ['mkfs.xfs', '-q', '-m', 'reflink=1'],
  btrfs: ['mkfs.btrfs', '-q'],
  ext4: ['mkfs.ext4', '-q', '-F'],
};

/** A fresh `fs` in a sparse image, loop-mounted; returns the mount point and its teardown. */
async function freshFs(base: string, fs: Fs): Promise<{ mnt: string; release: () => Promise<void> }> {
  const image = join(base, `${fs}.img`);
  const mnt = join(base, fs);
  mkdirSync(mnt);
  writeFileSync(image, '');
  truncateSync(image, 2048 * MiB);
  const [command, ...args] = mkfs[fs];
  execFileSync(command!, [...args, image]);
  const loop = await attachLoop(image, { autoclear: true });
  try {
    await mount(mnt, { source: loop.device, fstype: fs });
  } finally {
    await loop.close(); // the mount holds the device; unmounting detaches it
  }
  return { mnt, release: () => unmount(mnt) };
}

/** Small files of 100 B to 8 KiB in 100 directories, and a few large files. */
function makeTree(root: string): void {
  let seed = 1;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let d = 0; d < smallDirs; d++) {
    const dir = join(root, `d${d}`, 'sub');
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < filesPerDir; f++) {
      writeFileSync(join(dir, `f${f}`), Buffer.alloc(100 + Math.floor(random() * 8092), f));
    }
  }
  for (let i = 0; i < largeFiles; i++) writeFileSync(join(root, `large${i}`), Buffer.alloc(largeSize, i + 1));
}

function sync(path: string): void {
  execFileSync('sync', ['-f', path]);
}

interface Sample {
  native: number[];
  single: number[]; // copyTree with one thread
  cp: number[];
  stats?: TreeCopyStats;
}

async function benchFs(base: string, fs: Fs): Promise<Sample> {
  const { mnt, release } = await freshFs(base, fs);
  try {
    const src = join(mnt, 'src');
    makeTree(src);
    sync(mnt);
    const sample: Sample = { native: [], single: [], cp: [] };
    const timed = async (fn: () => Promise<unknown> | void): Promise<number> => {
      sync(mnt);
      const start = performance.now();
      await fn();
      return performance.now() - start;
    };
    const contenders: Record<keyof Omit<Sample, 'stats'>, (dst: string) => Promise<unknown> | void> = {
      native: async (dst) => {
        sample.stats = await copyTree(src, dst);
      },
      single: (dst) => copyTree(src, dst, { threads: 1 }),
      cp: (dst) => {
        execFileSync('cp', ['-a', '--reflink=auto', src, dst]);
      },
    };
    const names = Object.keys(contenders) as Array<keyof typeof contenders>;
    // One untimed round warms the caches for all alike; the order rotates.
    for (let run = -1; run < runs; run++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(k + run + 1) % names.length]!;
        const dst = join(mnt, `${name}${run}`);
        const ms = await timed(() => contenders[name](dst));
        if (run >= 0) sample[name].push(ms);
        rmSync(dst, { recursive: true });
      }
    }
    return sample;
  } finally {
    await release();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function summary(xs: number[]): string {
  return `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (scripts/in-private-ns npx tsx bench/tree-copy.ts)');
  const base = mkdtempSync(join(tmpdir(), 'strata-bench-'));
  const rows: string[][] = [];
  try {
    for (const fs of ['xfs', 'btrfs', 'ext4'] as const) {
      const s = await benchFs(base, fs);
      const st = s.stats!;
      rows.push([
        fs,
        summary(s.native),
        summary(s.single),
        summary(s.cp),
        (median(s.cp) / median(s.native)).toFixed(2),
        `${st.files} files: ${st.reflinked} reflinked, ${st.copyRanged} copy_file_range, ${st.copied} read/write`,
      ]);
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  const header = ['fs', 'copyTree ms median (min-max)', '1 thread', 'cp -a', 'cp/copyTree', 'copyTree did'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`${smallDirs * filesPerDir} small files + ${largeFiles} x ${largeSize / MiB} MiB, ${runs} runs each, ms`);
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

await main();
