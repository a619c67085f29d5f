import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { build, BuildError, type BuildOptions } from '../../lib/build/builder.js';
import { BuildCache } from '../../lib/build/cache.js';
import { checkStore } from '../../lib/store/fsck.js';
import type { Image } from '../../lib/store/images.js';
import { pruneSystem } from '../../lib/store/prune.js';
import { Store } from '../../lib/store/store.js';
import { diskUsage } from '../../lib/store/usage.js';
import { mountsBelow } from '../../lib/system/mountinfo.js';
import { bundleScript } from '../support/bundle.js';
import { busyboxImage } from '../support/busybox-base.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, rejection, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { writeTree } from '../support/trees.js';

// The seed's five-instruction example, with what a busybox base offers.
const FIVE_STEPS = `FROM base
COPY . /app
RUN mkdir -p /app/build $HOME/.cache && cat /app/src/*.txt > /app/build/out.txt && head -c 50000 /dev/urandom > $HOME/.cache/objects
RUN rm -r $HOME/.cache
CMD ["/bin/sh", "/app/run.sh"]
`;

describe('strata build', function () {
  const cleanups = new Cleanups();
  let root: string;
  let store: Store;
  let context: string;

  before(function () {
    if (!isRoot) this.skip();
  });

  beforeEach(async function () {
    root = await tmpfsDir(cleanups, '512m');
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
    await busyboxImage(store, cleanups);
    context = scratchDir(cleanups, 'context');
    writeTree(context, { 'src/a.txt': 'alpha\n', 'src/b.txt': 'beta\n', 'run.sh': 'cat /app/build/out.txt\n' });
  });

  afterEach(() => cleanups.release());

  async function buildIn(dockerfile: string, options: Partial<BuildOptions> = {}) {
    let output = '';
    const result = await build(store, { dockerfile, context, tags: ['app'], output: (text) => (output += text.toString()), ...options });
    return { ...result, output };
  }

  /** A file of the image's root filesystem, read through a container that is removed after. */
  async function readInImage(image: Image, path: string): Promise<string> {
    const container = await store.containers.create(image.topLayer!);
    try {
      return readFileSync(join(await store.containers.mount(container.id), path), 'utf8');
    } finally {
      await store.containers.remove(container.id);
    }
  }

  const layerIds = () => new Set(store.layers.list().map((l) => l.chainId));

  it('builds the five-step example: one layer per filesystem step holding its delta, metadata in the history', async function () {
    const { image, output } = await buildIn(FIVE_STEPS);
    expect(output).to.match(/^Sending build context to Docker daemon {2}\S+B\nStep 1\/5 : FROM base\n ---> [0-9a-f]{12}\nStep 2\/5 : COPY \. \/app\n/);
    expect(output).to.match(/Step 3\/5 : RUN mkdir[^\n]*\n ---> Running in [0-9a-f]{12}\nRemoving intermediate container [0-9a-f]{12}\n ---> [0-9a-f]{12}\n/);
    expect(output).to.contain(`Successfully built ${image.id.slice(7, 19)}\nSuccessfully tagged app:latest\n`);
    expect(output).to.not.contain('Using cache');

    const history = strata(['--root', root, 'image', 'history', '--format', 'json', 'app']);
    expect(history.code, history.stderr).to.equal(0);
    const rows = history.stdout.trim().split('\n').map((line) => JSON.parse(line) as { CreatedBy: string; Size: number });
    expect(rows).to.have.length(5);
    const [cmd, rm, run, copy, base] = rows;
    expect(cmd!.CreatedBy).to.equal('/bin/sh -c #(nop)  CMD ["/bin/sh" "/app/run.sh"]');
    expect(cmd!.Size).to.equal(0);
    expect(rm!.CreatedBy).to.equal('/bin/sh -c rm -r $HOME/.cache');
    expect(rm!.Size).to.equal(0); // only a whiteout: the bytes still ship in the layer below
    expect(run!.Size).to.be.at.least(50000 + 11);
    expect(copy!.CreatedBy).to.match(/^\/bin\/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in \/app $/);
    expect(copy!.Size).to.equal(6 + 5 + 23);
    expect(base!.Size).to.be.greaterThan(500_000);
    expect(image.config.rootfs.diff_ids).to.have.length(4);
    expect(image.config.config?.Cmd).to.deep.equal(['/bin/sh', '/app/run.sh']);
    expect(await readInImage(image, '/app/build/out.txt')).to.equal('alpha\nbeta\n');
    // No container, mount or scratch directory is left behind.
    expect(store.containers.list()).to.deep.equal([]);
    expect(mountsBelow(root)).to.deep.equal([root]);
  });

  it('reuses every step of an unchanged rebuild ("Using cache"), making nothing new', async function () {
    const first = await buildIn(FIVE_STEPS);
    const layers = layerIds();
    const second = await buildIn(FIVE_STEPS);
    expect(second.output.match(/ ---> Using cache\n/g)).to.have.length(4);
    expect(second.cached).to.equal(4);
    expect(second.image.id).to.equal(first.image.id);
    expect(layerIds()).to.deep.equal(layers);
  });

  it('writes nothing to the metadata when the strata command rebuilds with no change', async function () {
    writeFileSync(join(context, 'Dockerfile'), FIVE_STEPS);
    const first = await buildIn(FIVE_STEPS);
    // Files changed less than 2 s ago are not remembered (lib/build/context.ts):
    // the first rebuild after they settle records their hashes once.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await buildIn(FIVE_STEPS);
    // This process has the store open: the WAL stays, and any commit would change it.
    const files = () =>
      ['metadata.db', 'metadata.db-wal'].map((name) => {
        const stat = statSync(join(root, 'image', name), { bigint: true });
        return `${name} ${stat.size} ${stat.mtimeNs}`;
      });
    const before = files();
    const again = strata(['--root', root, 'build', '-q', '-t', 'app', context]);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.equal(`${first.image.id}\n`);
    expect(files()).to.deep.equal(before);
  });

  it('rebuilds only the changed step and those after it', async function () {
    const first = await buildIn(FIVE_STEPS);
    const changedCmd = await buildIn(FIVE_STEPS.replace('/app/run.sh"]', '/app/other.sh"]'));
    expect(changedCmd.cached).to.equal(3);
    expect(changedCmd.output).to.match(/Step 5\/5 : CMD[^\n]*\n ---> [0-9a-f]{12}\n/);
    expect(changedCmd.image.config.rootfs.diff_ids).to.deep.equal(first.image.config.rootfs.diff_ids);

    // A changed source file invalidates COPY and everything after it; touching one does not.
    execFileSync('touch', [join(context, 'src/a.txt')]);
    expect((await buildIn(FIVE_STEPS)).cached).to.equal(4);
    writeFileSync(join(context, 'src/a.txt'), 'ALPHA\n');
    const changedSource = await buildIn(FIVE_STEPS);
    expect(changedSource.cached).to.equal(0);
    expect(changedSource.image.config.rootfs.diff_ids[0]).to.equal(first.image.config.rootfs.diff_ids[0]);
    expect(changedSource.image.config.rootfs.diff_ids[1]).to.not.equal(first.image.config.rootfs.diff_ids[1]);
    expect(await readInImage(changedSource.image, '/app/build/out.txt')).to.equal('ALPHA\nbeta\n');
    // A changed mode counts as a change too.
    chmodSync(join(context, 'run.sh'), 0o755);
    expect((await buildIn(FIVE_STEPS)).cached).to.equal(0);
  });

  it('shares the layers of common first steps with a second Dockerfile, at zero extra bytes', async function () {
    const first = await buildIn(FIVE_STEPS, { tags: ['one'] });
    const before = store.layers.list();
    const second = await buildIn(FIVE_STEPS.replace(/RUN rm[^\n]*\nCMD[^\n]*\n/, 'RUN echo two > /app/which\nCMD ["cat", "/app/which"]\n'), { tags: ['two'] });
    expect(second.cached).to.equal(2);
    const shared = first.image.config.rootfs.diff_ids.slice(0, 3);
    expect(second.image.config.rootfs.diff_ids.slice(0, 3)).to.deep.equal(shared);
    // The only new layer is the second image's own RUN step, a few bytes.
    const added = store.layers.list().filter((l) => !before.some((b) => b.chainId === l.chainId));
    expect(added).to.have.length(1);
    expect(added[0]!.size).to.equal(4);
    expect(added[0]!.diffId).to.equal(second.image.config.rootfs.diff_ids[3]);
  });

  it('runs every step again with noCache (--no-cache)', async function () {
    await buildIn(FIVE_STEPS);
    const again = await buildIn(FIVE_STEPS, { noCache: true });
    expect(again.cached).to.equal(0);
    expect(again.output).to.not.contain('Using cache');
    // Its results replaced the cache entries: the next build reuses them.
    const third = await buildIn(FIVE_STEPS);
    expect(third.image.id).to.equal(again.image.id);
    // The first build's entries after COPY stay under their own parents, as docker keeps intermediate images.
    expect(new BuildCache(store).list()).to.have.length(4 + 3);
  });

  it('stops at a failing RUN with its exit status and output, leaving no image, container or mount', async function () {
    const dockerfile = 'FROM base\nCOPY . /app\nRUN echo "about to fail" && echo oops >&2 && exit 3\nCMD ["true"]\n';
    const layersBefore = store.layers.list().length;
    const error = await rejection(buildIn(dockerfile));
    expect(error).to.be.instanceOf(BuildError);
    expect((error as unknown as BuildError).exitCode).to.equal(3);
    expect(error.message).to.contain(`returned a non-zero code: 3`);
    expect(store.images.list().map((i) => i.tags)).to.deep.equal([['base:latest']]);
    expect(store.containers.list()).to.deep.equal([]);
    expect(mountsBelow(root)).to.deep.equal([root]);
    // The COPY step before it is cached (as docker keeps its intermediate images), nothing else.
    expect(store.layers.list()).to.have.length(layersBefore + 1);

    const dir = scratchDir(cleanups, 'failing');
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
    const cli = strata(['--root', root, 'build', '-t', 'bad', dir]);
    expect(cli.code).to.equal(3);
    expect(cli.stdout).to.contain('about to fail\noops\n');
    expect(cli.stderr).to.equal("Error: The command '/bin/sh -c echo \"about to fail\" && echo oops >&2 && exit 3' returned a non-zero code: 3\n");
    expect(strata(['--root', root, 'image', 'ls', '-q']).stdout.trim().split('\n')).to.have.length(1);
  });

  it('exposes a build secret to its RUN step only, and it reaches no layer', async function () {
    const secretFile = join(scratchDir(cleanups, 'secret'), 'token');
    const secret = 'sk-live-0123456789abcdef-very-secret';
    writeFileSync(secretFile, secret);
    const dockerfile = [
      'FROM base',
      'RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /token-length && ls -l /run/secrets/token',
      'RUN --mount=type=secret,id=token,target=/etc/api/key cat /etc/api/key | cut -c1-7 > /prefix; touch /etc/api/key 2>/dev/null || echo read-only',
      'RUN ls /run/secrets 2>/dev/null || echo "no secrets here"',
    ].join('\n');
    const { image, output } = await buildIn(dockerfile, { secrets: { token: secretFile } });
    expect(output).to.contain('read-only\n');
    expect(output).to.contain('no secrets here\n');
    expect((await readInImage(image, '/token-length')).trim()).to.equal(String(secret.length));
    expect(await readInImage(image, '/prefix')).to.equal('sk-live\n');
    // Every layer of the result, scanned byte for byte.
    for (const layer of store.images.layersOf(image)) {
      const chunks: Buffer[] = [];
      for await (const chunk of store.layers.export(layer.chainId)) chunks.push(chunk as Buffer);
      const tar = Buffer.concat(chunks);
      expect(tar.includes(secret), `layer ${layer.chainId}`).to.equal(false);
      const names = execFileSync('tar', ['-t'], { input: tar }).toString();
      expect(names).to.not.match(/run\/secrets|etc\/api/);
    }
    // Without the secret the step runs without it, unless it is required.
    const missing = await rejection(buildIn('FROM base\nRUN --mount=type=secret,id=token,required=true cat /run/secrets/token'));
    expect(missing.message).to.contain('secret token is required');
    expect(store.containers.list()).to.deep.equal([]);
  });

  it('applies ENV, ARG, WORKDIR and USER to RUN, and records them in the config', async function () {
    const dockerfile = [
      'ARG BASE=base',
      'ARG WHO=nobody',
      'FROM $BASE',
      'ARG WHO',
      'ENV GREETING="hello there" TARGET=/srv/$WHO',
      'WORKDIR $TARGET',
      'WORKDIR sub',
      'USER app',
      'RUN echo "$GREETING $WHO $(id -u):$(id -g) $(pwd) $HOME" > /tmp/facts',
      'USER root:staff',
      'RUN ["/bin/sh", "-c", "id -g > /tmp/gid"]',
      'LABEL org.example.who=$WHO',
      'EXPOSE 8080 53/udp',
      'ENTRYPOINT ["/bin/sh"]',
    ].join('\n');
    const { image, output } = await buildIn(dockerfile, { buildArgs: { WHO: 'world', UNUSED: 'x' } });
    expect(await readInImage(image, '/tmp/facts')).to.equal('hello there world 1000:1000 /srv/world/sub /home/app\n');
    expect(await readInImage(image, '/tmp/gid')).to.equal('50\n');
    expect(output).to.contain('[Warning] One or more build-args [UNUSED] were not consumed');
    const config = image.config.config!;
    expect(config.Env).to.deep.equal(['GREETING=hello there', 'TARGET=/srv/world']);
    expect(config.WorkingDir).to.equal('/srv/world/sub');
    expect(config.User).to.equal('root:staff');
    expect(config.Labels).to.deep.equal({ 'org.example.who': 'world' });
    expect(config.ExposedPorts).to.deep.equal({ '8080/tcp': {}, '53/udp': {} });
    expect(config.Entrypoint).to.deep.equal(['/bin/sh']);
    expect(image.config.history!.filter((h) => h.empty_layer)).to.have.length(9);
    expect(output).to.match(/^Step 3\/14 : FROM \$BASE\n ---> [0-9a-f]{12}\n/m);
    // A RUN sees the ARG values: another value is another cache key.
    const other = await buildIn(dockerfile, { buildArgs: { WHO: 'moon' } });
    expect(await readInImage(other.image, '/tmp/facts')).to.contain('moon');
    // Without one, the ARG redeclared after FROM keeps the value it had before FROM.
    const inherited = await buildIn(dockerfile);
    expect(await readInImage(inherited.image, '/tmp/facts')).to.contain('hello there nobody ');
  });

  it('copies with --chown, globs and .dockerignore, and unpacks local tars with ADD', async function () {
    writeTree(context, {
      '.dockerignore': '# not for the image\nsecret.txt\nlogs\n!logs/keep.log\n**/*.tmp\n',
      'secret.txt': 'nope',
      'logs/old.log': 'old',
      'logs/keep.log': 'kept',
      'deep/x.tmp': 'tmp',
      'deep/y.txt': 'y',
    });
    const tarDir = scratchDir(cleanups, 'tar');
    writeTree(tarDir, { 'pkg/bin/tool': '#!/bin/sh\necho tool\n', 'pkg/README': 'readme' });
    execFileSync('tar', ['--owner=1000', '--group=50', '-C', tarDir, '-czf', join(context, 'pkg.tar.gz'), 'pkg']);
    const dockerfile = [
      'FROM base',
      'COPY --chown=app:staff src/*.txt /dst/',
      'COPY . /all',
      'COPY run.sh /single/renamed.sh',
      'ADD pkg.tar.gz /opt/',
      'ADD --chown=0:0 pkg.tar.gz /rooted',
      'RUN stat -c "%n %u:%g" /dst /dst/a.txt /dst/b.txt /opt/pkg/README /rooted/pkg/README > /owners; ls -A /all | tr "\\n" " " > /listing; ls -A /all/logs /all/deep >> /listing',
    ].join('\n');
    const { image } = await buildIn(dockerfile);
    expect(await readInImage(image, '/owners')).to.equal('/dst 1000:50\n/dst/a.txt 1000:50\n/dst/b.txt 1000:50\n/opt/pkg/README 1000:50\n/rooted/pkg/README 0:0\n');
    const listing = await readInImage(image, '/listing');
    expect(listing).to.match(/^\.dockerignore deep logs pkg\.tar\.gz run\.sh src \//);
    expect(listing).to.contain('keep.log').and.not.contain('old.log').and.not.contain('x.tmp');
    expect(await readInImage(image, '/single/renamed.sh')).to.equal('cat /app/build/out.txt\n');
    // Missing sources and several sources into a non-directory are errors naming the problem.
    expect((await rejection(buildIn('FROM base\nCOPY secret.txt /x'))).message).to.contain('excluded by .dockerignore: secret.txt');
    expect((await rejection(buildIn('FROM base\nCOPY src/a.txt src/b.txt /x'))).message).to.contain('must be a directory and end with a /');
  });

  it('builds FROM scratch, and prints only the id with -q', async function () {
    writeTree(context, { 'Dockerfile': 'FROM scratch\nCOPY src /\nCMD ["/a.txt"]\n' });
    const quiet = strata(['--root', root, 'build', '-q', '-t', 'tiny', context]);
    expect(quiet.code, quiet.stderr).to.equal(0);
    expect(quiet.stdout).to.match(/^sha256:[0-9a-f]{64}\n$/);
    const image = store.images.resolve('tiny');
    expect(image.config.rootfs.diff_ids).to.have.length(1);
    expect(store.images.layersOf(image)[0]!.size).to.equal(11);
  });

  it('reports bad input on one line, building nothing', function () {
    const run = (...args: string[]) => strata(['--root', root, 'build', ...args]);
    const cases: Array<[string[], number, RegExp]> = [
      [['/nonexistent'], 2, /^Error: the build context \/nonexistent is not a directory\n$/],
      [[context], 2, /^Error: cannot read the Dockerfile .*\/Dockerfile: ENOENT\n$/],
      [['--secret', 'id=x', context], 2, /^Error: invalid --secret "id=x": use id=NAME,src=FILE\n$/],
      [['--build-arg', '=v', context], 2, /^Error: invalid --build-arg "=v": use NAME=VALUE\n$/],
      [['-t', 'Bad:Name', '-f', '-', context], 1, /^Error: .*Bad:Name/],
    ];
    for (const [args, code, message] of cases) {
      const result = strata(['--root', root, 'build', ...args], { input: 'FROM base\n' });
      expect(result.code, args.join(' ')).to.equal(code);
      expect(result.stderr, args.join(' ')).to.match(message);
    }
    writeFileSync(join(context, 'Dockerfile'), 'FROM base\nCOPY missing.txt /\n');
    const missing = run(context);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.equal('Error: COPY (line 2): file not found in build context or excluded by .dockerignore: missing.txt\n');
    writeFileSync(join(context, 'Dockerfile'), 'FROM nothere\n');
    expect(run(context).stderr).to.equal('Error: FROM (line 1): no such image: nothere\n');
    expect(store.images.list()).to.have.length(1);
    expect(store.containers.list()).to.deep.equal([]);
  });

  it('dies between making a step layer and recording it in the cache, leaving only a hold that fsck releases', async function () {
    const layersBefore = layerIds();
    const child = spawnSync(process.execPath, [bundleScript('test/support/build-child.ts'), root, context, 'FROM base\nRUN echo made > /made\n'], { encoding: 'utf8' });
    expect(child.signal, child.stderr).to.equal('SIGKILL');
    // The step's layer is held only by the dead process: not explicit, not in the cache.
    const [made, ...others] = store.layers.list().filter((layer) => !layersBefore.has(layer.chainId));
    expect(others).to.deep.equal([]);
    expect(made).to.deep.include({ explicit: false, refs: 1 });
    expect(new BuildCache(store).list()).to.deep.equal([]);

    const findings = await checkStore(store, { repair: true });
    expect(findings.map((f) => [f.kind, f.object, f.repaired])).to.deep.equal([['unfinished-work', made!.chainId, true]]);
    expect(layerIds()).to.deep.equal(layersBefore);
    expect(await checkStore(store)).to.deep.equal([]);
  });

  it('system prune removes the build cache no image uses, and keeps what an image still uses', async function () {
    await buildIn(FIVE_STEPS);
    const kept = await pruneSystem(store);
    expect(kept.buildCache.deleted).to.deep.equal([]);
    await store.images.remove('app');
    const before = new BuildCache(store).usage();
    const pruned = await pruneSystem(store);
    expect(pruned.buildCache.deleted).to.have.length(4);
    expect(pruned.spaceReclaimed).to.equal(before.size);
    expect(new BuildCache(store).usage()).to.deep.equal({ count: 0, active: 0, size: 0, reclaimable: 0 });
  });

  it('keeps cached layers after the image is removed, until builder prune frees them; df counts them, fsck agrees', async function () {
    await buildIn(FIVE_STEPS);
    const cache = new BuildCache(store);
    expect(cache.usage()).to.deep.include({ count: 4, active: 4, size: 0 });
    await store.images.remove('app');
    const usage = cache.usage();
    expect(usage).to.deep.include({ count: 4, active: 0 });
    expect(usage.size).to.be.at.least(50_000);
    // system df: the same bytes, all reclaimable; fsck counts the cache's references as uses.
    const df = (await diskUsage(store)).buildCache;
    expect(df).to.deep.include({ totalCount: 4, activeCount: 0, totalSize: usage.size, reclaimable: usage.size });
    expect(await checkStore(store, { repair: false })).to.deep.equal([]);
    // A rebuild after the image is gone is all cache hits.
    expect((await buildIn(FIVE_STEPS)).cached).to.equal(4);
    await store.images.remove('app');

    const pruned = strata(['--root', root, 'builder', 'prune', '-f', '--filter', 'until=1h']);
    expect(pruned.stdout).to.equal('Total reclaimed space: 0B\n'); // nothing older than an hour
    const all = strata(['--root', root, 'builder', 'prune', '-a', '-f']);
    expect(all.code, all.stderr).to.equal(0);
    expect(all.stdout).to.match(/^Deleted build cache objects:\n(sha256:[0-9a-f]{64}\n){4}\nTotal reclaimed space: \d+(\.\d+)?kB\n$/);
    store.close();
    store = await Store.open({ root });
    expect(store.layers.list()).to.have.length(1); // the base image's
    expect(new BuildCache(store).usage()).to.deep.equal({ count: 0, active: 0, size: 0, reclaimable: 0 });
  });
});
