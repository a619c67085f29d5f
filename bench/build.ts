// strata build against `docker build` with the classic builder
// (DOCKER_BUILDKIT=0) of the same Dockerfile and context, from the same base
// image (strata's, saved and loaded into a private dockerd), on the same fresh
// filesystem in one run. Two cases, each side alternating:
//   - rebuild with no change: every step comes from the cache;
//   - rebuild after one source file changed: COPY and the steps after it run.
//
//   npm run bench -- --only build        (env BENCH_FILES=1000,5000)
// It builds dist/ first and times the compiled CLI, as installed.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { saveImages } from '../lib/images/save.js';
import { Store } from '../lib/store/store.js';
import { busyboxImage } from '../test/support/busybox-base.js';
import { PrivateDocker } from '../test/support/docker.js';
import { Cleanups } from '../test/support/fixtures.js';
import { freshFilesystem, row, stats, type BenchCase, type Row } from './support.js';

// Context sizes, in files of 4 kB: a small service's sources, and one with its dependencies vendored.
const sizes = (process.env.BENCH_FILES ?? '1000,5000').split(',').map(Number);
const packageRoot = join(import.meta.dirname, '..');
const cli = join(packageRoot, 'dist/cli/strata.cjs');

// The seed's five-step shape.
const DOCKERFILE = `FROM base
COPY . /app
RUN cat /app/src/* > /app/bundle && mkdir -p /root/.cache && cp /app/bundle /root/.cache/objects
RUN rm -r /root/.cache
CMD ["/bin/sh", "-c", "wc -c /app/bundle"]
`;

function ms(fn: () => void): number {
  execFileSync('sync');
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export const build: BenchCase = {
  name: 'build',
  about: 'strata build rebuilds (no change, one changed file) against DOCKER_BUILDKIT=0 docker build',
  needs: ['dockerd', 'docker', 'mkfs.ext4'],
  async run(context) {
    const runs = context.runs ?? 7;
    execFileSync('npm', ['run', '--silent', 'build:ts'], { cwd: packageRoot, stdio: 'inherit' });
    const scratch = await freshFilesystem('ext4', 8);
    const cleanups = new Cleanups();
    try {
      const root = join(scratch.dir, 'strata');
      const baseArchive = join(scratch.dir, 'base.tar');
      const store = await Store.open({ root });
      try {
        await busyboxImage(store, cleanups);
        await saveImages(store, ['base'], createWriteStream(baseArchive), 'docker');
      } finally {
        store.close();
      }
      const docker = await PrivateDocker.start(cleanups, scratch.dir);
      docker.run(['load', '-i', baseArchive]);

      const rows: Row[] = [];
      for (const files of sizes) {
        // An application's sources: files of 4 kB.
        const dir = join(scratch.dir, `context-${files}`);
        mkdirSync(join(dir, 'src'), { recursive: true });
        for (let i = 0; i < files; i++) writeFileSync(join(dir, 'src', `f${i}.txt`), randomBytes(2048).toString('hex'));
        writeFileSync(join(dir, 'Dockerfile'), DOCKERFILE);
        const tag = `app-${files}`;
        const strataBuild = () => execFileSync('node', [cli, '--root', root, 'build', '-q', '-t', tag, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
        const dockerBuild = () => docker.run(['build', '-q', '--network=none', '-t', tag, dir]);
        // First builds fill both caches.
        strataBuild();
        dockerBuild();
        const unchanged = { strata: [] as number[], docker: [] as number[] };
        const oneChanged = { strata: [] as number[], docker: [] as number[] };
        for (let i = 0; i < runs; i++) {
          unchanged.strata.push(ms(strataBuild));
          unchanged.docker.push(ms(dockerBuild));
          writeFileSync(join(dir, 'src', 'f0.txt'), `changed ${i}\n`);
          oneChanged.strata.push(ms(strataBuild));
          oneChanged.docker.push(ms(dockerBuild));
        }
        const common = { case: 'build', section: `rebuild of the five-step Dockerfile, context of ${files} files of 4 kB`, fs: 'ext4', unit: 'ms' as const };
        for (const [name, samples] of [['no change', unchanged], ['one source file changed', oneChanged]] as const) {
          rows.push(row({ ...common, subject: `strata build, ${name}`, baseline: `docker build (classic), ${name}`, value: stats(samples.strata), base: stats(samples.docker) }));
        }
      }
      return rows;
    } finally {
      await cleanups.release();
      await scratch.release();
    }
  },
};
