// What every benchmark needs: a fresh loop-backed filesystem per case (the
// root ext4 here slows down after mass deletes), repeated timings reduced to
// median/min/max, and the rows a case returns to bench/run.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { attachLoop } from '../lib/native/loop.js';
import { mount, unmount } from '../lib/native/mount.js';

export type BenchFs = 'ext4' | 'xfs' | 'btrfs' | 'tmpfs';

export interface Scratch {
  dir: string;
  release(): Promise<void>;
}

/** A new filesystem of the given type, mounted on a fresh directory. */
export async function freshFilesystem(type: BenchFs, sizeGiB = 4): Promise<Scratch> {
  const base = mkdtempSync(join(tmpdir(), `strata-bench-${type}-`));
  const dir = join(base, 'mnt');
  mkdirSync(dir);
  if (type === 'tmpfs') {
    await mount(dir, { source: 'tmpfs', fstype: 'tmpfs', data: `size=${sizeGiB}g` });
    return { dir, release: async () => { await unmount(dir, ['detach']); rmSync(base, { recursive: true, force: true }); } };
  }
  const image = join(base, 'fs.img');
  writeFileSync(image, '');
  execFileSync('truncate', ['-s', `${sizeGiB}G`, image]);
  const mkfs: Record<string, string[]> = {
    ext4: ['mkfs.ext4', '-q', '-F'],
    xfs: ['mkfs.xfs', '-q', '-f', '-m', 'reflink=1'],
    btrfs: ['mkfs.btrfs', '-q', '-f'],
  };
  const [command, ...args] = mkfs[type]!;
  execFileSync(command!, [...args, image]);
  const loop = await attachLoop(image, { autoclear: true });
  await mount(dir, { source: loop.device, fstype: type });
  await loop.close(); // autoclear: the device goes when the filesystem is unmounted
  return { dir, release: () => release(dir, base) };
}

/**
 * Unmounts a scratch filesystem and removes its image. A busy one (a process
 * a peer left behind) is detached lazily, naming the holders, so that the
 * error that left it busy is the one reported.
 */
async function release(dir: string, base: string): Promise<void> {
  try {
    await unmount(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
    const holders = spawnSync('fuser', ['-vm', dir], { encoding: 'utf8' });
    const report = `${holders.stderr}${holders.stdout}`.split('\n').filter((line) => line && !line.startsWith('Cannot stat'));
    console.error(`bench: ${dir} is busy, detaching it lazily; held by:\n${report.join('\n')}`);
    await unmount(dir, ['detach']);
  }
  rmSync(base, { recursive: true, force: true });
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs: sorted.length };
}

/** Milliseconds of `fn`, `runs` times, after `warmup` untimed runs. */
export async function time(fn: () => Promise<unknown> | unknown, runs: number, warmup = 2): Promise<Stats> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return stats(samples);
}

/** One measured figure: a subject against its baseline, both from the same run. */
export interface Row {
  /** The registry name of the case that measured it. */
  case: string;
  /** The table it belongs in: what was measured. */
  section: string;
  /** The backing filesystem, or where it ran ("ext4 (6.1 guest)"). */
  fs: string;
  subject: string;
  baseline?: string;
  unit: 'ms' | 's' | 'MB' | 'bytes';
  value: Stats;
  base?: Stats;
  /** value.median / base.median: above 1, the subject takes that many times the baseline. */
  ratio?: number;
  /** Disk space the subject's result took on the backing filesystem, median of the runs. */
  bytesUsed?: number;
  note?: string;
}

/** A row with its ratio filled in when it has a baseline. */
export function row(fields: Omit<Row, 'ratio'>): Row {
  return fields.base ? { ...fields, ratio: fields.value.median / fields.base.median } : fields;
}

export interface BenchContext {
  /** Runs asked for with --runs; each case has its own default. */
  runs?: number;
  log(message: string): void;
}

/** One entry of `npm run bench`'s registry (bench/cases.ts). */
export interface BenchCase {
  name: string;
  /** One line for --list. */
  about: string;
  /** Commands that must be on PATH; "vm" is the UML guest (scripts/vm-run). */
  needs: readonly string[];
  run(context: BenchContext): Promise<Row[]>;
}

/** Bytes allocated on the filesystem holding `dir`, after writing out what is dirty. */
export function usedBytes(dir: string): number {
  execFileSync('sync', ['-f', dir]);
  const s = statfsSync(dir);
  return (s.blocks - s.bfree) * s.bsize;
}
