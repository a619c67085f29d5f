// system df from counters: 1,000 containers on 100 images, through the library
// and the CLI process, against `docker system df` with 50 containers on a
// private dockerd in the same run; then a store of 10,000 layers (100 images
// of 100 layers), where layer ls, image ls and system df must stay fast. The
// CLI figures come with their floor from the same run: `node -e ''` and the
// same command on an empty store (process start, module loading, open).
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import type { Digest } from '../lib/store/digest.js';
import { Store } from '../lib/store/store.js';
import { diskUsage } from '../lib/store/usage.js';
import { PrivateDocker } from '../test/support/docker.js';
import { Cleanups } from '../test/support/fixtures.js';
import { buildTar, sha256 } from '../test/support/tar-builder.js';
import { freshFilesystem, row, time, type BenchCase } from './support.js';

const repo = join(import.meta.dirname, '..');
const cliMain = join(repo, 'dist/cli/strata.cjs');

/** A layer tar of one small file, distinct per name. */
function layerTar(name: string): { tar: Buffer; diffId: Digest } {
  const tar = buildTar([{ name, data: `${name}\n`.repeat(10) }]);
  return { tar, diffId: sha256(tar) as Digest };
}

/** An image of `depth` layers of its own; returns its id and top layer. */
async function addImage(store: Store, name: string, depth: number): Promise<{ id: Digest; top: Digest }> {
  let parent: Digest | null = null;
  const diffIds: Digest[] = [];
  for (let i = 0; i < depth; i++) {
    const { tar, diffId } = layerTar(`${name}-${i}`);
    parent = (await store.layers.import(Readable.from([tar]), { parent, expectedDiffId: diffId })).layer.chainId;
    diffIds.push(diffId);
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', created: new Date().toISOString(), rootfs: { type: 'layers', diff_ids: diffIds } }));
  return { id: store.images.add(config, { tags: [`${name}:latest`] }).image.id, top: parent! };
}

/** Milliseconds of the strata CLI process (compiled, as installed), from spawn to exit. */
function timeCli(root: string, args: string[], runs: number) {
  return time(() => {
    const result = spawnSync(process.execPath, [cliMain, '--root', root, ...args], { maxBuffer: 1 << 28 });
    if (result.status !== 0) throw new Error(`strata ${args.join(' ')}: ${result.stderr.toString()}`);
  }, runs);
}

/** What every CLI figure includes whatever the store holds. */
async function cliFloor(dir: string, runs: number) {
  const root = join(dir, 'empty');
  (await Store.open({ root })).close();
  return {
    node: await time(() => execFileSync(process.execPath, ['-e', '']), runs),
    layerLs: await timeCli(root, ['layer', 'ls'], runs),
    imageLs: await timeCli(root, ['image', 'ls'], runs),
    systemDf: await timeCli(root, ['system', 'df'], runs),
  };
}

async function manyContainers(dir: string, runs: number) {
  const root = join(dir, 'containers');
  const store = await Store.open({ root });
  try {
    const images: Array<{ id: Digest; top: Digest }> = [];
    for (let i = 0; i < 100; i++) images.push(await addImage(store, `img${i}`, 2));
    for (let i = 0; i < 1000; i++) {
      const image = images[i % images.length]!;
      const container = await store.containers.create(image.top, { image: image.id });
      // One in ten has written something, measured at its unmount.
      if (i % 10 === 0) {
        writeFileSync(join(await store.containers.mount(container.id), 'data'), Buffer.alloc(4096 * (i % 7 + 1)));
        await store.containers.unmount(container.id);
      }
    }
    const library = await time(() => diskUsage(store), runs);
    store.close();
    return { library, cli: await timeCli(root, ['system', 'df'], runs) };
  } finally {
    store.close();
  }
}

async function manyLayers(dir: string, runs: number) {
  const root = join(dir, 'layers');
  const store = await Store.open({ root });
  try {
    const started = Date.now();
    for (let i = 0; i < 100; i++) {
      const { id, top } = await addImage(store, `deep${i}`, 100);
      if (i % 10 === 0) {
        await store.containers.create(top, { image: id });
      }
    }
    const setupSeconds = (Date.now() - started) / 1000;
    const layerCount = store.layers.list().length;
    const library = {
      layerLs: await time(() => store.layers.list(), runs),
      imageLs: await time(() => {
        const sizes = store.layers.chainSizes();
        return store.images.list().map((image) => sizes.get(image.topLayer!));
      }, runs),
      systemDf: await time(() => diskUsage(store), runs),
    };
    store.close();
    const cli = {
      layerLs: await timeCli(root, ['layer', 'ls'], runs),
      imageLs: await timeCli(root, ['image', 'ls'], runs),
      systemDf: await timeCli(root, ['system', 'df'], runs),
    };
    return { layers: layerCount, setupSeconds, library, cli };
  } finally {
    store.close();
  }
}

async function dockerBaseline(dir: string, runs: number) {
  const cleanups = new Cleanups();
  try {
    const docker = await PrivateDocker.start(cleanups, dir);
    docker.run(['import', '-', 'bench-base'], { input: buildTar([{ name: 'etc/hostname', data: 'bench\n' }]) });
    for (let i = 0; i < 50; i++) docker.run(['create', 'bench-base', '/nothing']);
    return await time(() => docker.run(['system', 'df']), runs);
  } finally {
    await cleanups.release();
  }
}

export const systemDf: BenchCase = {
  name: 'system-df',
  about: 'system df with 1,000 containers against docker system df; layer ls, image ls, system df with 10,000 layers',
  needs: ['dockerd', 'docker'],
  async run(context) {
    const runs = context.runs ?? 10;
    // The CLI is timed as installed: the compiled JavaScript, not tsx.
    execFileSync('npm', ['run', '--silent', 'build:ts'], { cwd: repo, stdio: 'inherit' });
    const scratch = await freshFilesystem('tmpfs', 4);
    try {
      const floor = await cliFloor(scratch.dir, runs);
      const containers = await manyContainers(scratch.dir, runs);
      const docker = await dockerBaseline(scratch.dir, runs);
      context.log('system-df: 10,000 layers (100 images of 100 layers) being made');
      const layers = await manyLayers(scratch.dir, runs);
      const many = { case: 'system-df', section: 'system df: 1,000 containers, 100 images', fs: 'tmpfs', unit: 'ms' as const };
      const deep = { case: 'system-df', section: `${layers.layers} layers: list and df`, fs: 'tmpfs', unit: 'ms' as const };
      const names = { layerLs: 'layer ls', imageLs: 'image ls', systemDf: 'system df' } as const;
      return [
        row({ ...many, subject: 'diskUsage() (library)', baseline: 'docker system df, 50 containers (process)', value: containers.library, base: docker }),
        row({ ...many, subject: 'strata system df (process)', baseline: 'docker system df, 50 containers (process)', value: containers.cli, base: docker }),
        row({ ...many, subject: "node -e '' (process start alone)", value: floor.node }),
        ...(['layerLs', 'imageLs', 'systemDf'] as const).flatMap((key) => [
          row({ ...deep, subject: `${names[key]} (library)`, value: layers.library[key] }),
          row({ ...deep, subject: `strata ${names[key]} (process)`, baseline: 'the same on an empty store', value: layers.cli[key], base: floor[key] }),
        ]),
      ];
    } finally {
      await scratch.release();
    }
  },
};
