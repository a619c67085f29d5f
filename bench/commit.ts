// Commit of 1,000 changed files plus 100 MB: strata (in place, and streamed
// for a mounted container) against `docker commit` of the same change on the
// same filesystem, in the same run.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { Store } from '../lib/store/store.js';
import { PrivateDocker } from '../test/support/docker.js';
import { Cleanups } from '../test/support/fixtures.js';
import { freshFilesystem, row, stats, type BenchCase, type BenchFs, type Row } from './support.js';

function changeTree(dir: string): void {
  mkdirSync(join(dir, 'app/files'), { recursive: true });
  for (let i = 0; i < 1000; i++) writeFileSync(join(dir, 'app/files', `f${i}`), `file ${i}\n`.repeat(20));
  writeFileSync(join(dir, 'app/blob'), execFileSync('head', ['-c', String(100 * 1024 * 1024), '/dev/urandom'], { maxBuffer: 1 << 28 }));
}

async function measure(fsType: BenchFs, runs: number): Promise<Row[]> {
  const scratch = await freshFilesystem(fsType, 8);
  try {
    const change = join(scratch.dir, 'change');
    changeTree(change);
    const base = join(scratch.dir, 'base');
    mkdirSync(join(base, 'etc'), { recursive: true });
    writeFileSync(join(base, 'etc/hostname'), 'bench\n');
    const baseTar = execFileSync('tar', ['-C', base, '-cf', '-', '.']);

    const store = await Store.open({ root: join(scratch.dir, 'strata') });
    const image = (await store.layers.import(Readable.from([baseTar]), { explicit: true })).layer.chainId;
    const timeCommit = async (mounted: boolean) => {
      const samples: number[] = [];
      for (let i = 0; i < runs; i++) {
        const c = await store.containers.create(image);
        const rootfs = await store.containers.mount(c.id);
        execFileSync('cp', ['-a', join(change, 'app'), rootfs]);
        if (!mounted) await store.containers.unmount(c.id);
        execFileSync('sync', ['-f', scratch.dir]);
        const start = process.hrtime.bigint();
        const { layer } = await store.containers.commit(c.id);
        samples.push(Number(process.hrtime.bigint() - start) / 1e6);
        await store.containers.remove(c.id, { force: true });
        await store.layers.remove(layer.chainId);
      }
      return stats(samples);
    };
    const inPlace = await timeCommit(false);
    const streamed = await timeCommit(true);
    store.close();

    const cleanups = new Cleanups();
    const docker = await PrivateDocker.start(cleanups, scratch.dir);
    try {
      docker.run(['import', '-', 'bench-base'], { input: baseTar });
      const samples: number[] = [];
      for (let i = 0; i < runs; i++) {
        const id = docker.run(['create', 'bench-base', '/nothing']).trim();
        docker.run(['cp', join(change, 'app'), `${id}:/`]);
        execFileSync('sync', ['-f', scratch.dir]);
        const start = process.hrtime.bigint();
        const committed = docker.run(['commit', id]).trim();
        samples.push(Number(process.hrtime.bigint() - start) / 1e6);
        docker.run(['rm', id]);
        docker.run(['rmi', committed]);
      }
      const dockerCommit = stats(samples);
      const common = { case: 'commit', section: 'commit of 1,000 files + 100 MB', fs: fsType, unit: 'ms' as const };
      return [
        row({ ...common, subject: 'strata commit in place (unmounted)', value: inPlace, baseline: 'docker commit', base: dockerCommit }),
        row({ ...common, subject: 'strata commit streamed (mounted)', value: streamed, baseline: 'docker commit', base: dockerCommit }),
        row({ ...common, subject: 'docker commit', value: dockerCommit }),
      ];
    } finally {
      await cleanups.release();
    }
  } finally {
    await scratch.release();
  }
}

export const commit: BenchCase = {
  name: 'commit',
  about: 'commit of 1,000 files + 100 MB, in place and streamed, against docker commit (private dockerd)',
  needs: ['dockerd', 'docker', 'mkfs.ext4', 'tar', 'cp'],
  run: (context) => measure('ext4', context.runs ?? 5),
};
