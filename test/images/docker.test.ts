// Interop with a real Docker engine: images docker builds load into stratafs
// and mount to the tree docker exports; stratafs' saves load into docker and
// run; OCI layouts skopeo writes (gzip and zstd layers) load too.
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { strata } from '../support/cli.js';
import { BUSYBOX, dockerAvailable, PrivateDocker } from '../support/docker.js';
import { Cleanups, isRoot, requireFeature, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { inVm } from '../support/vm.js';
import { snapshot, type NodeInfo } from '../support/tar-builder.js';
import { writeTree } from '../support/trees.js';

const TAG = 'strata-test:1';

/** Paths docker's init layer adds to every container; not part of the image. */
const INIT_PATHS = ['.dockerenv', 'dev', 'proc', 'sys', 'etc'];

/** The tree as the interop tests compare it: type, mode, owner, size, link target, contents. */
function tree(dir: string): Record<string, Omit<NodeInfo, 'mtimeNs'>> {
  const nodes: Record<string, Omit<NodeInfo, 'mtimeNs'>> = {};
  for (const [path, { mtimeNs: _mtime, ...info }] of Object.entries(snapshot(dir))) {
    if (path === '.' || INIT_PATHS.some((p) => path === p || path.startsWith(`${p}/`))) continue;
    nodes[path] = info;
  }
  return nodes;
}

function ok(result: { code: number | null; stdout: string; stderr: string }): string {
  expect(result.code, result.stderr).to.equal(0);
  return result.stdout;
}

describe('images against a real Docker engine', function () {
  this.timeout(300_000);
  const suite = new Cleanups();
  const cleanups = new Cleanups();
  let docker: PrivateDocker;
  let work: string;
  let saved: string;
  let imageId: string;

  before(async function () {
    if (!isRoot) this.skip();
    // Interop with Docker is about Docker, not the kernel: the host run proves it.
    requireFeature(this, !inVm, 'the Docker engine does not run in the User-Mode Linux guest');
    requireFeature(this, dockerAvailable, 'docker.io (dockerd) is not installed');
    requireFeature(this, existsSync(BUSYBOX), 'busybox-static is not installed');
    docker = await PrivateDocker.start(suite);
    work = scratchDir(suite, 'interop');

    // A base with a shell: static busybox and its applets.
    const base = join(work, 'base');
    mkdirSync(join(base, 'bin'), { recursive: true });
    execFileSync('cp', [BUSYBOX, join(base, 'bin/busybox')]);
    for (const applet of execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n')) {
      if (applet && applet !== 'busybox') symlinkSync('busybox', join(base, 'bin', applet));
    }
    docker.importDir(base, 'strata-bb:1');

    // Several layers: files, a symlink, a big file; then deletions, a directory
    // replaced by a file and one replaced by a new directory; modes, owners, a
    // hard link, a FIFO; an empty layer (ENV).
    const context = join(work, 'context');
    writeTree(context, {
      'a/one': 'one\n',
      'a/exe': '#!/bin/sh\n',
      'a/dir/gone': 'gone\n',
      'a/dir/kept': 'kept\n',
      'a/rep/inner': 'inner\n',
      'b/two': 'two\n',
      'b/old': 'old\n',
    });
    symlinkSync('one', join(context, 'a/link'));
    writeFileSync(join(context, 'a/big'), randomBytes(3 << 20));
    chmodSync(join(context, 'a/exe'), 0o755);
    writeFileSync(
      join(context, 'Dockerfile'),
      [
        'FROM strata-bb:1',
        'COPY a/ /data/',
        'COPY b/ /data/b/',
        'RUN rm /data/dir/gone && chmod 600 /data/one && chmod 4755 /data/exe && mkdir /data/dir2 && echo x > /data/dir2/x && chown 12:34 /data/dir2/x && ln /data/one /data/hard && mkfifo /data/fifo',
        'RUN rm -rf /data/b && mkdir /data/b && echo three > /data/b/three && rm -rf /data/rep && echo now-a-file > /data/rep',
        'ENV FOO=bar',
        'CMD ["/bin/sh"]',
      ].join('\n'),
    );
    docker.run(['build', '-q', '-t', TAG, context]);
    imageId = docker.run(['image', 'inspect', '--format', '{{.Id}}', TAG]).trim();
    saved = join(work, 'docker-save.tar');
    docker.run(['save', '-o', saved, TAG]);
  });
  afterEach(() => cleanups.release());
  after(() => suite.release());

  it('loads a docker save archive; a container of it mounts to the tree docker exports', async function () {
    const root = await tmpfsDir(cleanups);
    expect(ok(strata(['--root', root, 'load', '-i', saved]))).to.equal(`Loaded image: ${TAG}\n`);
    const again = strata(['--root', root, 'load', '-i', '-'], { input: execFileSync('cat', [saved], { maxBuffer: 1 << 30 }) });
    expect(ok(again)).to.equal(`Loaded image: ${TAG}\n`);
    expect(again.stderr).to.match(/Loading layer [0-9a-f]{12}: already exists/);

    const [inspected] = JSON.parse(ok(strata(['--root', root, 'image', 'inspect', TAG])));
    const [theirs] = JSON.parse(docker.run(['image', 'inspect', TAG]));
    expect(inspected.Id).to.equal(imageId);
    expect(inspected.RootFS).to.deep.equal(theirs.RootFS);
    expect(inspected.Config).to.deep.equal(theirs.Config);
    expect(inspected).to.include({ Architecture: theirs.Architecture, Os: theirs.Os, Created: theirs.Created });
    expect(inspected.GraphDriver.Data.UpperDir).to.be.a('string');
    expect(inspected.GraphDriver.Data.LowerDir.split(':')).to.have.length(theirs.RootFS.Layers.length - 1);

    const history = ok(strata(['--root', root, 'image', 'history', TAG])).trimEnd().split('\n');
    expect(history[0]).to.match(/^IMAGE {3,}CREATED {3,}CREATED BY {3,}SIZE {3,}COMMENT$/);
    expect(history).to.have.length(8);
    expect(history[1]).to.match(/^[0-9a-f]{12} .*CMD \["\/bin\/sh"\].* 0B$/);

    const id = ok(strata(['--root', root, 'container', 'create', TAG])).trim();
    const merged = ok(strata(['--root', root, 'container', 'mount', id])).trim();
    cleanups.defer(() => strata(['--root', root, 'container', 'rm', '-f', id]));
    const ours = tree(merged);
    ok(strata(['--root', root, 'container', 'unmount', id]));

    const exported = scratchDir(cleanups, 'exported');
    const container = docker.run(['create', '--network', 'none', TAG]).trim();
    const tar = join(exported, '..', `${container}.tar`);
    cleanups.defer(() => execFileSync('rm', ['-f', tar]));
    docker.run(['export', '-o', tar, container]);
    docker.run(['rm', container]);
    execFileSync('tar', ['-xpf', tar, '--numeric-owner', '--xattrs', '-C', exported]);
    const theirsTree = tree(exported);

    expect(ours).to.deep.equal(theirsTree);

    // strata export writes the same flattened tree.
    const flattened = scratchDir(cleanups, 'flattened');
    const ourTar = join(flattened, '..', `${id}.tar`);
    cleanups.defer(() => execFileSync('rm', ['-f', ourTar]));
    ok(strata(['--root', root, 'export', '-o', ourTar, id]));
    execFileSync('tar', ['-xpf', ourTar, '--numeric-owner', '--xattrs', '-C', flattened]);
    expect(tree(flattened)).to.deep.equal(theirsTree);
    expect(ours).to.not.have.property('data/dir/gone');
    expect(ours).to.not.have.property('data/b/two');
    expect(ours['data/rep']).to.include({ type: 'file', size: 11 });
    expect(ours['data/dir2/x']).to.include({ uid: 12, gid: 34 });
    expect(ours['data/exe']).to.include({ mode: 0o4755 });
    expect(ours['data/link']).to.include({ type: 'symlink', link: 'one' });
    expect(ours['data/fifo']).to.include({ type: 'fifo' });
  });

  it('saves archives docker loads and runs, with the same image ID', async function () {
    const root = await tmpfsDir(cleanups);
    ok(strata(['--root', root, 'load', '-i', saved]));
    ok(strata(['--root', root, 'image', 'tag', TAG, 'strata-copy']));
    const out = join(work, 'strata-save.tar');
    cleanups.defer(() => execFileSync('rm', ['-f', out]));
    ok(strata(['--root', root, 'save', '-o', out, TAG, 'strata-copy:latest']));

    docker.run(['rmi', TAG]);
    const loaded = docker.run(['load', '-i', out]);
    expect(loaded).to.include(`Loaded image: ${TAG}`).and.include('Loaded image: strata-copy:latest');
    expect(docker.run(['image', 'inspect', '--format', '{{.Id}}', TAG]).trim()).to.equal(imageId);
    expect(docker.run(['image', 'inspect', '--format', '{{.Id}}', 'strata-copy']).trim()).to.equal(imageId);
    const ran = docker.run(['run', '--rm', '--network', 'none', TAG, 'sh', '-c', 'cat /data/one /data/b/three /data/rep; stat -c %u:%g /data/dir2/x; ls /data/dir']);
    expect(ran).to.equal('one\nthree\nnow-a-file\n12:34\nkept\n');
    docker.run(['rmi', 'strata-copy']);

    // Both formats load back into stratafs unchanged.
    for (const format of ['docker', 'oci']) {
      const again = join(work, `again-${format}.tar`);
      cleanups.defer(() => execFileSync('rm', ['-f', again]));
      ok(strata(['--root', root, 'save', '--format', format, '-o', again, imageId.slice(7, 19)]));
      const fresh = await tmpfsDir(cleanups);
      expect(ok(strata(['--root', fresh, 'load', '-i', again]))).to.equal(`Loaded image ID: ${imageId}\n`);
    }
  });

  it('loads OCI image layouts skopeo writes, with gzip and zstd layers', async function () {
    const [{ RootFS: rootFs }] = JSON.parse(docker.run(['image', 'inspect', TAG]));
    requireFeature(this, spawnSync('sh', ['-c', 'command -v skopeo']).status === 0, 'skopeo is not installed');
    for (const compression of ['gzip', 'zstd']) {
      const layout = scratchDir(cleanups, `oci-${compression}`);
      execFileSync('skopeo', [
        'copy',
        '--dest-compress',
        '--dest-compress-format',
        compression,
        `docker-archive:${saved}`,
        `oci:${layout}:docker.io/library/strata-oci:${compression}`,
      ]);
      const tar = `${layout}.tar`;
      cleanups.defer(() => execFileSync('rm', ['-f', tar]));
      execFileSync('tar', ['-C', layout, '-cf', tar, '.']);
      const root = await tmpfsDir(cleanups);
      const loaded = strata(['--root', root, 'load', '-i', tar]);
      expect(ok(loaded), compression).to.equal(`Loaded image: strata-oci:${compression}\n`);
      const [inspected] = JSON.parse(ok(strata(['--root', root, 'image', 'inspect', `strata-oci:${compression}`])));
      // skopeo rewrites the config (so the ID differs) but not the layers.
      expect(inspected.RootFS).to.deep.equal(rootFs);
      expect(inspected.RepoDigests).to.have.length(1);
    }
  });
});
