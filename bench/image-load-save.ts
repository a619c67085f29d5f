// strata load/save against docker load/save of the same multi-layer
// docker-archive, in one run, on the same fresh filesystem, and against the
// physical floor: unpacking the same archive and its layers with tar -x (+
// sync), and sha256sum of the same bytes. Each side runs `runs` times
// (alternating); the image is removed between loads so every load writes all
// layers; each timing starts after a sync. It builds dist/ first and times
// the compiled CLI. BENCH_MB sets the archive size.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Cleanups } from '../test/support/fixtures.js';
import { PrivateDocker } from '../test/support/docker.js';
import { freshFilesystem, row, stats, type BenchCase, type Row } from './support.js';

const TOTAL_MB = Number(process.env.BENCH_MB ?? 400);
const LAYERS = 5;
const packageRoot = join(import.meta.dirname, '..');
// The compiled CLI, as installed: tsx's start-up would be timed otherwise.
const cli = join(packageRoot, 'dist/cli/strata.cjs');

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

/** Milliseconds fn takes, starting with no dirty data on the filesystem: strata's syncfs must not write out docker's. */
function time(fn: () => void): number {
  execFileSync('sync');
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** The floor of a load: the archive and each layer in it unpacked by tar, then written out. */
const unpackScript = 'tar -xf "$1" -C "$2" && for l in "$2"/*/layer.tar; do mkdir "${l%.tar}" && tar -xf "$l" -C "${l%.tar}"; done && sync -f "$2"';

async function measure(runs: number): Promise<Row[]> {
  execFileSync('npm', ['run', '--silent', 'build:ts'], { cwd: packageRoot, stdio: 'inherit' });
  const cleanups = new Cleanups();
  const scratch = await freshFilesystem('ext4', 16);
  try {
    const docker = await PrivateDocker.start(cleanups, scratch.dir);
    const work = join(scratch.dir, 'bench');
    mkdirSync(work);
    const archive = buildArchive(work);
    const root = join(work, 'strata-root');
    const strata = (...args: string[]) => execFileSync(process.execPath, [cli, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });

    // strata syncs each layer before registering it; docker load returns with
    // its layers still in the page cache. "durable" adds a sync to both.
    const loads = { strata: [] as number[], docker: [] as number[] };
    const durable = { strata: [] as number[], docker: [] as number[] };
    const saves = { strata: [] as number[], docker: [] as number[] };
    // docker create makes the container's layers; docker mounts them only on start.
    const creates = { strata: [] as number[], docker: [] as number[] };
    const out = join(work, 'out.tar');
    const sync = () => execFileSync('sync');
    const unpacks: number[] = [];
    const hashes: number[] = [];
    for (let run = 0; run < runs; run++) {
      let loaded = 0;
      durable.docker.push(
        time(() => {
          loaded = time(() => docker.run(['load', '-q', '-i', archive]));
          sync();
        }),
      );
      loads.docker.push(loaded);
    let id = '';
    creates.docker.push(time(() => (id = docker.run(['create', 'bench:1']).trim())));
    docker.run(['rm', id]);
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
    creates.strata.push(
      time(() => {
        id = strata('container', 'create', 'bench:1').toString().trim();
        strata('container', 'mount', id);
      }),
    );
    strata('container', 'rm', '-f', id);
      saves.strata.push(time(() => strata('save', '-o', out, 'bench:1')));
      rmSync(out);
      strata('image', 'rm', 'bench:1');
      const unpacked = join(work, 'unpacked');
      mkdirSync(unpacked);
      unpacks.push(time(() => execFileSync('sh', ['-c', unpackScript, 'unpack', archive, unpacked])));
      rmSync(unpacked, { recursive: true });
      hashes.push(time(() => execFileSync('sha256sum', [archive])));
    }
    const section = (what: string) => `${what} of a ${TOTAL_MB} MB, ${LAYERS}-layer docker-archive`;
    const pair = (what: string, ours: number[], theirs: number[]) => {
      const common = { case: 'image-load-save', section: section(what), fs: 'ext4', unit: 'ms' as const };
      return [
        row({ ...common, subject: `strata ${what}`, value: stats(ours), baseline: `docker ${what}`, base: stats(theirs) }),
        row({ ...common, subject: `docker ${what}`, value: stats(theirs) }),
      ];
    };
    const floor = { case: 'image-load-save', section: section('load'), fs: 'ext4', unit: 'ms' as const };
    return [
      ...pair('load', loads.strata, loads.docker),
      row({ ...floor, subject: 'tar -x of the archive and its layers + sync', value: stats(unpacks) }),
      row({ ...floor, subject: 'sha256sum of the archive', value: stats(hashes) }),
      ...pair('load, durable (+ sync)', durable.strata, durable.docker),
      ...pair('save', saves.strata, saves.docker),
    row({ case: 'image-load-save', section: `container create of a ${LAYERS}-layer image, through the CLI`, fs: 'ext4', unit: 'ms', subject: 'strata container create + mount', value: stats(creates.strata), baseline: 'docker create', base: stats(creates.docker) }),
    row({ case: 'image-load-save', section: `container create of a ${LAYERS}-layer image, through the CLI`, fs: 'ext4', unit: 'ms', subject: 'docker create', value: stats(creates.docker) }),
    ];
  } finally {
    await cleanups.release();
    await scratch.release();
  }
}

export const imageLoadSave: BenchCase = {
  name: 'image-load-save',
  about: 'strata load, container create, save against docker (private dockerd); tar -x and sha256sum of the same archive',
  needs: ['dockerd', 'docker', 'mkfs.ext4', 'tar', 'sha256sum', 'sh'],
  run: (context) => measure(context.runs ?? 5),
};
