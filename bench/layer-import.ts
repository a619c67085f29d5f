// Layer import/export benchmark: applyLayerArchive (hashing, tar-split and
// syncfs included) against `tar -x` + syncfs of the same ~500 MB, ~12,000-entry
// archive into the same fresh filesystem (tmpfs, or a loop-mounted ext4 whose
// image lives on the disk); and exportLayerArchive against `tar -c`.
// Run as root in a private mount namespace:
//   scripts/in-private-ns npx tsx bench/layer-import.ts [runs] [tmpfs|ext4]
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { applyLayerArchive } from '../lib/archive/apply.js';
import { exportLayerArchive } from '../lib/archive/export.js';
import { mount, unmount } from '../lib/native/mount.js';

const self = fileURLToPath(import.meta.url);

/** Child mode: one timed operation in a fresh process, so its peak RSS is its own. */
async function child(mode: string, tar: string, dir: string, splitFile: string): Promise<void> {
  const cpuAtStart = process.cpuUsage();
  let seconds: number;
  let splitBytes = 0;
  if (mode === 'apply') {
    const start = performance.now();
    const result = await applyLayerArchive(createReadStream(tar), dir, { whiteouts: 'overlay' });
    seconds = (performance.now() - start) / 1000;
    writeFileSync(splitFile, JSON.stringify({ diffId: result.diffId, split: result.tarSplit.toString('base64') }));
    splitBytes = result.tarSplit.length;
  } else {
    const { diffId, split } = JSON.parse(readFileSync(splitFile, 'utf8')) as { diffId: string; split: string };
    const start = performance.now();
    for await (const _chunk of exportLayerArchive(dir, Buffer.from(split, 'base64'), diffId)) {
      // consumed like a pipe would be
    }
    seconds = (performance.now() - start) / 1000;
  }
  const cpu = process.cpuUsage(cpuAtStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  process.stdout.write(JSON.stringify({ seconds, cpuSeconds, maxRssMb: process.resourceUsage().maxRSS / 1024, splitBytes }));
}

interface ChildResult {
  seconds: number;
  /** CPU time of all the child's threads during the operation. */
  cpuSeconds: number;
  maxRssMb: number;
  splitBytes: number;
}

function runChild(mode: string, tar: string, dir: string, splitFile: string): ChildResult {
  const out = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', mode, tar, dir, splitFile], {
    encoding: 'utf8',
  });
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
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

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 5);
  const fs = process.argv[3] ?? 'tmpfs';
  const base = mkdtempSync(join(tmpdir(), 'strata-bench-'));
  const image = `${base}.img`;
  if (fs === 'ext4') {
    execFileSync('truncate', ['-s', '8G', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    execFileSync('mount', ['-o', 'loop', image, base]);
  } else {
    await mount(base, { source: 'tmpfs', fstype: 'tmpfs', data: 'size=6g' });
  }
  try {
    const tree = join(base, 'tree');
    mkdirSync(tree);
    generateTree(tree);
    const tar = join(base, 'layer.tar');
    execFileSync('tar', ['--format=pax', '-cf', tar, '-C', tree, '.']);
    const entries = execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).split('\n').length - 1;
    console.log(`archive: ${(statSync(tar).size / 1e6).toFixed(0)} MB, ${entries} entries, on ${fs}`);
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
      const applied = runChild('apply', tar, byUs, splitFile);
      if (run === 0) console.log(`tar-split: ${(applied.splitBytes / 1024).toFixed(0)} KiB deflated`);
      applyTimes.push(applied.seconds);
      applyCpu.push(applied.cpuSeconds);
      rss.push(applied.maxRssMb);
      const exported = runChild('export', tar, byUs, splitFile);
      exportTimes.push(exported.seconds);
      exportRss.push(exported.maxRssMb);
      rmSync(byUs, { recursive: true });
    }
    const report = (name: string, ours: number[], theirs: number[], what: string) =>
      console.log(
        `${name}: ours ${median(ours).toFixed(3)} s, ${what} ${median(theirs).toFixed(3)} s, ratio ${(median(ours) / median(theirs)).toFixed(2)}x (median of ${runs})`,
      );
    report('import', applyTimes, tarTimes, 'tar -x + syncfs');
    console.log(
      `import CPU: ours ${median(applyCpu).toFixed(3)} s (all threads), tar -x ${median(tarCpu).toFixed(3)} s`,
    );
    console.log(`import peak RSS: ${median(rss).toFixed(0)} MB (median), max ${Math.max(...rss).toFixed(0)} MB`);
    report('export', exportTimes, tarcTimes, 'tar -c | cat');
    console.log(`export peak RSS: ${median(exportRss).toFixed(0)} MB (median)`);
  } finally {
    await unmount(base, ['detach']);
    rmSync(base, { recursive: true, force: true });
    rmSync(image, { force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , mode, tar, dir, splitFile] = process.argv;
  await child(mode!, tar!, dir!, splitFile!);
} else {
  await main();
}
