// What every benchmark needs: a fresh loop-backed filesystem per case (the
// root ext4 here slows down after mass deletes), repeated timings reduced to
// median/min/max, and results written as JSON under bench/out/.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  return { dir, release: async () => { await unmount(dir); rmSync(base, { recursive: true, force: true }); } };
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

export const fmt = (s: Stats, unit = 'ms') => `${s.median.toFixed(3)} ${unit} (min ${s.min.toFixed(3)}, max ${s.max.toFixed(3)}, n=${s.runs})`;

export function writeResult(name: string, result: unknown): string {
  const dir = join(import.meta.dirname, 'out');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
