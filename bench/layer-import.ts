// Layer import/export benchmark: applyLayerArchive (hashing, tar-split and
// syncfs included) against `tar -x` + syncfs of the same ~500 MB, ~12,000-entry
// archive into the same fresh filesystem (tmpfs, or a loop-mounted ext4 whose
// image lives on the disk); and exportLayerArchive against `tar -c`.
// Each timed operation runs in a child process (layer-import-child.ts, bundled
// and run with plain node, as the installed CLI runs), so its peak RSS is its own.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { bundleScript } from '../test/support/bundle.js';
import { freshFilesystem, row, stats, type BenchCase, type BenchFs, type Row } from './support.js';

interface ChildResult {
  seconds: number;
  /** CPU time of all the child's threads during the operation. */
  cpuSeconds: number;
  maxRssMb: number;
  splitBytes: number;
}

/** Runs one operation in a fresh process: the child, bundled, so its peak RSS is the library's and not a TypeScript loader's. */
function runChild(child: string, mode: string, tar: string, dir: string, splitFile: string): ChildResult {
  const out = spawnSync(process.execPath, [child, mode, tar, dir, splitFile], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`child ${mode} failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as ChildResult;
}

/** Wall and CPU seconds of a shell command, from GNU time. */
function timedShell(command: string, scratch: string): { seconds: number; cpuSeconds: number } {
  const report = join(scratch, 'time.txt');
  execFileSync('/usr/bin/time', ['-f', '%e %U %S', '-o', report, 'sh', '-c', command]);
  const [wall, user, system] = readFileSync(report, 'utf8').trim().split(' ').map(Number);
  return { seconds: wall!, cpuSeconds: user! + system! };
}

/** ~500 MB in ~11,000 files and ~1,000 directories, file sizes skewed small. */
function generateTree(root: string): void {
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const pool = Buffer.alloc(8 << 20);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE((random() * 0xffffffff) >>> 0, i);
  for (let d = 0; d < 1000; d++) mkdirSync(join(root, `d${d % 50}`, `sub${d}`), { recursive: true });
  for (let f = 0; f < 11000; f++) {
    const size = f % 10 === 0 ? Math.floor(150_000 + random() * 340_000) : Math.floor(2_000 + random() * 32_000);
    const offset = Math.floor(random() * (pool.length - size));
    writeFileSync(join(root, `d${f % 50}`, `sub${(f * 7) % 1000 - ((f * 7) % 1000) % 50 + (f % 50)}`, `file${f}`), pool.subarray(offset, offset + size));
  }
}

async function measure(runs: number, fs: BenchFs, log: (message: string) => void): Promise<Row[]> {
  const child = bundleScript('bench/layer-import-child.ts');
  const scratch = await freshFilesystem(fs, 8);
  const base = scratch.dir;
  try {
    const tree = join(base, 'tree');
    mkdirSync(tree);
    generateTree(tree);
    const tar = join(base, 'layer.tar');
    execFileSync('tar', ['--format=pax', '-cf', tar, '-C', tree, '.']);
    const entries = execFileSync('tar', ['-tf', tar], { encoding: 'utf8', maxBuffer: 1 << 28 }).split('\n').length - 1;
    const size = `${(statSync(tar).size / 1e6).toFixed(0)} MB, ${entries}-entry layer`;
    rmSync(tree, { recursive: true });

    const tarTimes: number[] = [];
    const tarCpu: number[] = [];
    const applyCpu: number[] = [];
    const applyTimes: number[] = [];
    const tarcTimes: number[] = [];
    const exportTimes: number[] = [];
    const rss: number[] = [];
    const exportRss: number[] = [];
    for (let run = 0; run < runs; run++) {
      execFileSync('sync', ['-f', base]);
      const byTar = join(base, `tar-${run}`);
      mkdirSync(byTar);
      const extracted = timedShell(`tar -xf "${tar}" -C "${byTar}" && sync -f "${byTar}"`, base);
      tarTimes.push(extracted.seconds);
      tarCpu.push(extracted.cpuSeconds);
      tarcTimes.push(timedShell(`tar -cf - -C "${byTar}" . | cat > /dev/null`, base).seconds);
      rmSync(byTar, { recursive: true });

      execFileSync('sync', ['-f', base]);
      const byUs = join(base, `apply-${run}`);
      mkdirSync(byUs);
      const splitFile = join(base, 'split.json');
      const applied = runChild(child, 'apply', tar, byUs, splitFile);
      if (run === 0) log(`layer-import: tar-split ${(applied.splitBytes / 1024).toFixed(0)} KiB deflated`);
      applyTimes.push(applied.seconds);
      applyCpu.push(applied.cpuSeconds);
      rss.push(applied.maxRssMb);
      const exported = runChild(child, 'export', tar, byUs, splitFile);
      exportTimes.push(exported.seconds);
      exportRss.push(exported.maxRssMb);
      rmSync(byUs, { recursive: true });
    }
    const common = { case: 'layer-import', fs };
    return [
      row({ ...common, section: `layer import of a ${size} (hashing included)`, subject: 'strata import (applyLayerArchive)', unit: 's', value: stats(applyTimes), baseline: 'tar -x + syncfs', base: stats(tarTimes) }),
      row({ ...common, section: `layer import of a ${size} (hashing included)`, subject: 'tar -x + syncfs', unit: 's', value: stats(tarTimes) }),
      row({ ...common, section: 'layer import: CPU seconds (all threads)', subject: 'strata import', unit: 's', value: stats(applyCpu), baseline: 'tar -x', base: stats(tarCpu) }),
      row({ ...common, section: 'layer import and export: peak RSS', subject: 'strata import', unit: 'MB', value: stats(rss) }),
      row({ ...common, section: 'layer import and export: peak RSS', subject: 'strata export', unit: 'MB', value: stats(exportRss) }),
      row({ ...common, section: `layer export of a ${size}`, subject: 'strata export (exportLayerArchive)', unit: 's', value: stats(exportTimes), baseline: 'tar -c | cat', base: stats(tarcTimes) }),
      row({ ...common, section: `layer export of a ${size}`, subject: 'tar -c | cat', unit: 's', value: stats(tarcTimes) }),
    ];
  } finally {
    await scratch.release();
  }
}

export const layerImport: BenchCase = {
  name: 'layer-import',
  about: 'layer import (hashing, tar-split, syncfs) against tar -x + syncfs; export against tar -c; peak RSS',
  needs: ['mkfs.ext4', 'tar', '/usr/bin/time'],
  run: (context) => measure(context.runs ?? 3, 'ext4', context.log),
};

