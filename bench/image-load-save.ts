// strata load/save against docker load/save of the same multi-layer
// docker-archive, in one run, on the same filesystem. Each side runs RUNS
// times (alternating); the image is removed between loads so every load
// writes all layers; each timing starts after a sync. Prints median, min and max seconds and the ratio.
//
//   scripts/in-private-ns node --import tsx bench/image-load-save.ts   (env BENCH_MB, RUNS)
// It builds dist/ first and times the compiled CLI.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Cleanups, scratchDir } from '../test/support/fixtures.js';
import { PrivateDocker } from '../test/support/docker.js';

const TOTAL_MB = Number(process.env.BENCH_MB ?? 400);
const RUNS = Number(process.env.RUNS ?? 5);
const LAYERS = 5;
const packageRoot = join(import.meta.dirname, '..');
// The compiled CLI, as installed: tsx's start-up would be timed otherwise.
const cli = join(packageRoot, 'dist/cli/main.js');

function sha256File(file: string): string {
  return `sha256:${execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]}`;
}

/** A docker-archive of LAYERS layers: a few big files and many small ones each, TOTAL_MB in all. */
function buildArchive(dir: string): string {
  const layerMb = Math.floor(TOTAL_MB / LAYERS);
  const diffIds: string[] = [];
  const layerPaths: string[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const tree = join(dir, `tree${i}`);
    mkdirSync(join(tree, `layer${i}/small`), { recursive: true });
    // 80% in 4 big files, the rest in 4 KiB files.
    for (let f = 0; f < 4; f++) writeFileSync(join(tree, `layer${i}/big${f}`), randomBytes(Math.floor((layerMb * 0.8 * 1e6) / 4)));
    const small = Math.floor((layerMb * 0.2 * 1e6) / 4096);
    for (let f = 0; f < small; f++) writeFileSync(join(tree, `layer${i}/small/f${f}`), randomBytes(4096));
    const id = `${i}`.padStart(64, '0');
    mkdirSync(join(dir, 'archive', id), { recursive: true });
    const layerTar = join(dir, 'archive', id, 'layer.tar');
    execFileSync('tar', ['--format=pax', '--sort=name', '--numeric-owner', '-C', tree, '-cf', layerTar, '.']);
    rmSync(tree, { recursive: true });
    diffIds.push(sha256File(layerTar));
    layerPaths.push(`${id}/layer.tar`);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: new Date().toISOString(),
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map((_, i) => ({ created_by: `layer ${i}` })),
    }),
  );
  const configName = `${execFileSync('sha256sum', { input: config, encoding: 'utf8' }).split(' ')[0]}.json`;
  writeFileSync(join(dir, 'archive', configName), config);
  writeFileSync(join(dir, 'archive', 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: ['bench:1'], Layers: layerPaths }]));
  const archive = join(dir, 'bench.tar');
  execFileSync('tar', ['-C', join(dir, 'archive'), '-cf', archive, '.']);
  rmSync(join(dir, 'archive'), { recursive: true });
  return archive;
}

/** Seconds fn takes, starting with no dirty data on the filesystem: strata's syncfs must not write out docker's. */
function time(fn: () => void): number {
  execFileSync('sync');
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, max: sorted.at(-1)! };
}

const fmt = (s: { median: number; min: number; max: number }) => `${s.median.toFixed(2)}s (min ${s.min.toFixed(2)}, max ${s.max.toFixed(2)})`;

execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: packageRoot, stdio: 'inherit' });
const cleanups = new Cleanups();
try {
  const docker = await PrivateDocker.start(cleanups);
  const work = scratchDir(cleanups, 'bench');
  const archive = buildArchive(work);
  const root = join(work, 'strata-root');
  const strata = (...args: string[]) => execFileSync(process.execPath, [cli, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  console.log(`archive: ${(statSync(archive).size / 1e6).toFixed(0)} MB, ${LAYERS} layers; ${RUNS} runs each; strata on ${root}, docker data root ${docker.dir}`);

  // strata syncs each layer before registering it; docker load returns with
  // its layers still in the page cache. "durable" adds a sync to both.
  const loads = { strata: [] as number[], docker: [] as number[] };
  const durable = { strata: [] as number[], docker: [] as number[] };
  const saves = { strata: [] as number[], docker: [] as number[] };
  const out = join(work, 'out.tar');
  const sync = () => execFileSync('sync');
  for (let run = 0; run < RUNS; run++) {
    let loaded = 0;
    durable.docker.push(
      time(() => {
        loaded = time(() => docker.run(['load', '-q', '-i', archive]));
        sync();
      }),
    );
    loads.docker.push(loaded);
    saves.docker.push(time(() => docker.run(['save', '-o', out, 'bench:1'])));
    rmSync(out);
    docker.run(['rmi', 'bench:1']);
    durable.strata.push(
      time(() => {
        loaded = time(() => strata('load', '-q', '-i', archive));
        sync();
      }),
    );
    loads.strata.push(loaded);
    saves.strata.push(time(() => strata('save', '-o', out, 'bench:1')));
    rmSync(out);
    strata('image', 'rm', 'bench:1');
  }
  const line = (what: string, ours: number[], theirs: number[]) => {
    const a = stats(ours);
    const b = stats(theirs);
    console.log(`${what}: strata ${fmt(a)}; docker ${fmt(b)}; docker/strata ${(b.median / a.median).toFixed(2)}x`);
  };
  line('load', loads.strata, loads.docker);
  line('load, durable', durable.strata, durable.docker);
  line('save', saves.strata, saves.docker);
} finally {
  await cleanups.release();
}
