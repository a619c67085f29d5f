// Tree copy (the vfs driver's hot path) against `cp -a --reflink=auto`, on
// fresh loop-mounted xfs (reflink=1), btrfs and ext4: a rootfs of some 20,000
// entries (20,000 small files in 200 directories) and a few large files.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { copyTree, type TreeCopyStats } from '../lib/native/tree.js';
import { freshFilesystem, row, stats, type BenchCase, type Row } from './support.js';

type Fs = 'xfs' | 'btrfs' | 'ext4';

const MiB = 1024 * 1024;
const smallDirs = 100;
const filesPerDir = 200;
const largeFiles = 3;
const largeSize = 64 * MiB;

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
  native: number[]; // copyTree with its own choice of threads (one on btrfs)
  single: number[]; // copyTree with one thread
  two: number[]; // copyTree with two threads
  cp: number[];
  stats?: TreeCopyStats;
}

async function benchFs(fs: Fs, runs: number): Promise<Sample> {
  const scratch = await freshFilesystem(fs, 2);
  const mnt = scratch.dir;
  try {
    const src = join(mnt, 'src');
    makeTree(src);
    sync(mnt);
    const sample: Sample = { native: [], single: [], two: [], cp: [] };
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
      two: (dst) => copyTree(src, dst, { threads: 2 }),
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
    await scratch.release();
  }
}

export const treeCopy: BenchCase = {
  name: 'tree-copy',
  about: "the vfs driver's native parallel tree copy against cp -a --reflink=auto on xfs, btrfs, ext4",
  needs: ['mkfs.ext4', 'mkfs.xfs', 'mkfs.btrfs', 'cp'],
  async run(context) {
    const rows: Row[] = [];
    for (const fs of ['xfs', 'btrfs', 'ext4'] as const) {
      const s = await benchFs(fs, context.runs ?? 5);
      const st = s.stats!;
      const common = {
        case: 'tree-copy',
        section: `tree copy of ${smallDirs * filesPerDir} small files + ${largeFiles} × ${largeSize / MiB} MiB`,
        fs,
        unit: 'ms' as const,
      };
      const cp = stats(s.cp);
      // Reflinks where the filesystem shares extents; else one read and write
      // per small file, copy_file_range for larger ones.
      const did = `${st.reflinked} reflinked, ${st.copyRanged} copy_file_range, ${st.copied} read/write${fs === 'btrfs' ? '; 1 thread on btrfs' : ''}`;
      rows.push(row({ ...common, subject: 'copyTree', value: stats(s.native), baseline: 'cp -a --reflink=auto', base: cp, note: did }));
      rows.push(row({ ...common, subject: 'copyTree, 1 thread', value: stats(s.single), baseline: 'cp -a --reflink=auto', base: cp }));
      rows.push(row({ ...common, subject: 'copyTree, 2 threads', value: stats(s.two), baseline: 'cp -a --reflink=auto', base: cp }));
      rows.push(row({ ...common, subject: 'cp -a --reflink=auto', value: cp }));
    }
    return rows;
  },
};
