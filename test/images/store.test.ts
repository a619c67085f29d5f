// The image store through the strata command: tags as docker normalizes
// them, references, rm that untags before it deletes, dangling images,
// containers made from images.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { normalizeTag, parseReference } from '../../lib/images/reference.js';
import { sha256 } from '../../lib/store/digest.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { writeTree } from '../support/trees.js';
import { config, dockerArchive, layer, ociLayout } from './archives.js';

function ok(result: { code: number | null; stdout: string; stderr: string }): string {
  expect(result.code, result.stderr).to.equal(0);
  return result.stdout;
}

describe('image references', function () {
  it('normalizes names and tags as docker does', function () {
    expect(normalizeTag('alpine')).to.equal('alpine:latest');
    expect(normalizeTag('docker.io/library/alpine:3.19')).to.equal('alpine:3.19');
    expect(normalizeTag('index.docker.io/library/alpine')).to.equal('alpine:latest');
    expect(normalizeTag('library/alpine')).to.equal('alpine:latest');
    expect(normalizeTag('docker.io/user/app:v1')).to.equal('user/app:v1');
    expect(normalizeTag('localhost:5000/app')).to.equal('localhost:5000/app:latest');
    expect(normalizeTag('registry.example.com/a/b:c')).to.equal('registry.example.com/a/b:c');
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(parseReference(`alpine@${digest}`)).to.deep.equal({ repository: 'alpine', digest });
    for (const bad of ['Alpine', 'a:b:c', 'a/', ':tag', 'a@sha256:12', 'a b', `${'x'.repeat(256)}`, 'a:-tag']) {
      expect(() => normalizeTag(bad), bad).to.throw(/invalid reference format/);
    }
    expect(() => normalizeTag(`alpine@${digest}`)).to.throw(/digest reference cannot be used as a tag/);
  });
});

describe('strata image', function () {
  this.timeout(120_000);
  const cleanups = new Cleanups();
  let root: string;
  let work: string;
  const base = layer({ 'etc/motd': 'hello\n' });
  const top = layer({ 'etc/top': 'top\n' });
  const cli = (...args: string[]) => strata(['--root', root, ...args]);

  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    root = await tmpfsDir(cleanups);
    work = scratchDir(cleanups, 'images');
  });
  afterEach(() => cleanups.release());

  function archive(name: string, data: Buffer): string {
    const file = join(work, name);
    writeFileSync(file, data);
    return file;
  }

  it('loads with several tags, resolves every kind of reference, untags, then removes', function () {
    const configBytes = config([base.diffId, top.diffId]);
    const id = sha256(configBytes);
    const file = archive('two.tar', dockerArchive([base, top], { configBytes, tags: ['docker.io/library/foo:1', 'bar'] }));
    const loaded = cli('load', '-i', file);
    expect(ok(loaded)).to.equal('Loaded image: foo:1\nLoaded image: bar:latest\n');
    expect(loaded.stderr).to.match(/^Loading layer [0-9a-f]{12} \(2.05kB\)\nLoading layer [0-9a-f]{12} \(2.05kB\)\n$/);

    const table = ok(cli('image', 'ls')).split('\n');
    expect(table[0]).to.match(/^REPOSITORY {3,}TAG {3,}IMAGE ID {3,}CREATED {3,}SIZE$/);
    expect(table.slice(1, 3).map((l) => l.split(/ {3,}/).slice(0, 3))).to.have.deep.members([
      ['bar', 'latest', id.slice(7, 19)],
      ['foo', '1', id.slice(7, 19)],
    ]);
    expect(ok(cli('image', 'ls', '-q', '--no-trunc'))).to.equal(`${id}\n`);

    for (const ref of ['foo:1', 'docker.io/library/foo:1', 'bar', 'bar:latest', id, id.slice(7, 15), `foo@${id}`]) {
      const [shown] = JSON.parse(ok(cli('image', 'inspect', ref)));
      expect(shown.Id, ref).to.equal(id);
    }
    const [shown] = JSON.parse(ok(cli('image', 'inspect', 'foo:1')));
    expect(shown).to.deep.include({
      RepoTags: ['bar:latest', 'foo:1'],
      Created: '2024-01-02T03:04:05Z',
      Architecture: 'amd64',
      Os: 'linux',
      Size: 10,
      RootFS: { Type: 'layers', Layers: [base.diffId, top.diffId] },
    });
    expect(shown.GraphDriver.Name).to.equal('overlay2');
    expect(Object.keys(shown.GraphDriver.Data)).to.deep.equal(['LowerDir', 'UpperDir']);

    const history = ok(cli('image', 'history', '--no-trunc', 'foo:1')).trimEnd().split('\n');
    expect(history.map((l) => l.split(/ {3,}/)[0])).to.deep.equal(['IMAGE', id, '<missing>']);
    expect(history[1]).to.include('step 1').and.match(/4B$/);

    // An ID with two tags is not removed unless forced; a tag is just untagged.
    expect(cli('image', 'rm', id.slice(7, 19)).stderr).to.match(/^Error: image [0-9a-f]{12} is referenced in several repositories \(bar:latest, foo:1\)/);
    expect(ok(cli('image', 'rm', 'bar'))).to.equal('Untagged: bar:latest\n');
    ok(cli('image', 'tag', 'foo:1', 'localhost:5000/foo:2'));
    expect(ok(cli('image', 'rm', 'foo:1'))).to.equal('Untagged: foo:1\n');
    expect(ok(cli('image', 'rm', 'localhost:5000/foo:2'))).to.equal(
      `Untagged: localhost:5000/foo:2\nDeleted: ${id}\nDeleted: ${sha256(`${base.diffId} ${top.diffId}`)}\nDeleted: ${base.diffId}\n`,
    );
    expect(ok(cli('image', 'ls', '-q'))).to.equal('');
    expect(ok(cli('layer', 'ls', '-q'))).to.equal('');
  });

  it('keeps an image whose tag moved as dangling, and shares layers between images', function () {
    const first = config([base.diffId]);
    const second = config([base.diffId, top.diffId]);
    ok(cli('load', '-i', archive('1.tar', dockerArchive([base], { configBytes: first, tags: ['app'] }))));
    const again = cli('load', '-i', archive('2.tar', dockerArchive([base, top], { configBytes: second, tags: ['app'] })));
    expect(again.stderr).to.match(/^Loading layer [0-9a-f]{12}: already exists\n/);
    expect(ok(cli('image', 'ls', '-q', '--no-trunc', '--filter', 'dangling=true'))).to.equal(`${sha256(first)}\n`);
    expect(ok(cli('image', 'ls', '-q', '--no-trunc', '--filter', 'dangling=false'))).to.equal(`${sha256(second)}\n`);
    expect(ok(cli('image', 'ls'))).to.match(/\n<none> {3,}<none> {3,}[0-9a-f]{12} /);
    // Removing the dangling image keeps the base layer the other image uses.
    expect(ok(cli('image', 'rm', sha256(first)))).to.equal(`Deleted: ${sha256(first)}\n`);
    expect(ok(cli('layer', 'ls', '-q', '--no-trunc')).split('\n')).to.include(base.diffId);
  });

  it('loads several images of one archive, following the symlinks docker writes for repeated layers', function () {
    const first = config([base.diffId]);
    const second = config([top.diffId, base.diffId]);
    const legacy = `0${'0'.repeat(63)}/layer.tar`;
    const manifest = JSON.stringify([
      { Config: `${sha256(first).slice(7)}.json`, RepoTags: ['one:1'], Layers: [legacy] },
      { Config: `${sha256(second).slice(7)}.json`, RepoTags: ['two:1'], Layers: ['top/layer.tar', 'again/layer.tar'] },
    ]);
    const file = archive(
      'two-images.tar',
      dockerArchive([base], {
        configBytes: first,
        manifest,
        extra: [
          { name: `${sha256(second).slice(7)}.json`, data: second },
          { name: 'top/layer.tar', data: top.tar },
          { name: 'again/layer.tar', type: '2', linkname: `../${legacy}` },
        ],
      }),
    );
    expect(ok(cli('load', '-i', file))).to.equal('Loaded image: one:1\nLoaded image: two:1\n');
    const [two] = JSON.parse(ok(cli('image', 'inspect', 'two:1')));
    expect(two.RootFS.Layers).to.deep.equal([top.diffId, base.diffId]);
    expect(ok(cli('layer', 'ls', '-q')).trim().split('\n')).to.have.length(3);
  });

  it('creates containers from images, and refuses to remove an image a container uses', function () {
    ok(cli('load', '-i', archive('1.tar', dockerArchive([base, top], { tags: ['app:1'] }))));
    const id = ok(cli('container', 'create', 'app:1')).trim();
    const merged = ok(cli('container', 'mount', id)).trim();
    expect(readFileSync(join(merged, 'etc/motd'), 'utf8')).to.equal('hello\n');
    expect(readFileSync(join(merged, 'etc/top'), 'utf8')).to.equal('top\n');
    ok(cli('container', 'unmount', id));

    const refused = cli('image', 'rm', 'app:1');
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.equal(`Error: image ${refused.stderr.match(/image ([0-9a-f]{12})/)![1]} is used by container(s) ${id.slice(0, 12)}: remove them first, or force\n`);
    expect(ok(cli('image', 'ls', '-q'))).to.not.equal('');

    // Forced: the image goes, the container keeps its layers.
    expect(ok(cli('image', 'rm', '-f', 'app:1'))).to.match(/^Untagged: app:1\nDeleted: sha256:[0-9a-f]{64}\n$/);
    expect(readFileSync(join(ok(cli('container', 'mount', id)).trim(), 'etc/top'), 'utf8')).to.equal('top\n');
    ok(cli('container', 'unmount', id));
    ok(cli('container', 'rm', id));
    expect(ok(cli('layer', 'ls', '-q'))).to.equal('');

    expect(cli('container', 'create', 'nosuch:1').stderr).to.equal('Error: no such image or layer: nosuch:1\n');
  });

  it('loads OCI layouts with gzip, zstd and plain layers, tagged from their ref names', function () {
    const third = layer({ 'etc/third': '3\n' });
    const oci = archive(
      'oci.tar',
      ociLayout(
        [
          { blob: gzipSync(base.tar), diffId: base.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
          { blob: execFileSync('zstd', ['-q', '-c'], { input: top.tar }), diffId: top.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' },
          { blob: third.tar, diffId: third.diffId },
        ],
        { refName: 'example.com/oci/app:v2' },
      ),
    );
    expect(ok(cli('load', '-i', oci))).to.equal('Loaded image: example.com/oci/app:v2\n');
    const [shown] = JSON.parse(ok(cli('image', 'inspect', 'example.com/oci/app:v2')));
    expect(shown.RootFS.Layers).to.deep.equal([base.diffId, top.diffId, third.diffId]);
    expect(shown.RepoDigests).to.have.length(1);
    expect(shown.RepoDigests[0]).to.match(/^example\.com\/oci\/app@sha256:[0-9a-f]{64}$/);
    const [again] = JSON.parse(ok(cli('image', 'inspect', shown.RepoDigests[0])));
    expect(again.Id).to.equal(shown.Id);

    // The layers export byte-exact: a save holds the uncompressed tars, by DiffID.
    const saved = join(work, 'saved.tar');
    ok(cli('save', '-o', saved, 'example.com/oci/app:v2'));
    const names = execFileSync('tar', ['-tf', saved], { encoding: 'utf8' }).split('\n');
    for (const diffId of shown.RootFS.Layers as string[]) expect(names).to.include(`blobs/sha256/${diffId.slice(7)}`);
    expect(names).to.include.members(['index.json', 'manifest.json', 'oci-layout', 'repositories']);
    const fresh = join(work, 'fresh');
    const reloaded = strata(['--root', fresh, 'load', '-i', '-'], { input: readFileSync(saved) });
    expect(ok(reloaded)).to.equal('Loaded image: example.com/oci/app:v2\n');
    expect(JSON.parse(ok(strata(['--root', fresh, 'image', 'inspect', 'example.com/oci/app:v2'])))[0].Id).to.equal(shown.Id);
  });

  it('imports a directory or a tar as a one-layer image, and exports a container flattened', function () {
    const dir = join(work, 'rootfs');
    writeTree(dir, { 'bin/tool': 'tool\n', 'etc/conf': 'conf\n', 'empty/': '' });
    const id = ok(cli('import', dir, 'rootfs:1')).trim();
    const [shown] = JSON.parse(ok(cli('image', 'inspect', 'rootfs:1')));
    expect(shown).to.include({ Id: id, Comment: `Imported from ${dir}`, Size: 10 });
    expect(shown.RootFS.Layers).to.have.length(1);
    expect(ok(cli('image', 'history', 'rootfs:1'))).to.match(/\n[0-9a-f]{12} {3,}(Less than a second|\d+ seconds?) ago {3,}10B {3,}Imported from /);

    // A container's changes show in its export; deleted files do not.
    const container = ok(cli('container', 'create', 'rootfs:1')).trim();
    const merged = ok(cli('container', 'mount', container)).trim();
    writeFileSync(join(merged, 'etc/added'), 'added\n');
    rmSync(join(merged, 'bin/tool'));
    ok(cli('container', 'unmount', container));
    const exported = join(work, 'exported.tar');
    ok(cli('export', container, '-o', exported));
    const listing = execFileSync('tar', ['-tf', exported], { encoding: 'utf8' }).trim().split('\n');
    expect(listing).to.deep.equal(['bin/', 'empty/', 'etc/', 'etc/added', 'etc/conf']);

    // Piped back in, it is an image of that tree.
    const again = ok(strata(['--root', root, 'import', '-', 'again'], { input: readFileSync(exported) })).trim();
    const second = ok(cli('container', 'create', again)).trim();
    const view = ok(cli('container', 'mount', second)).trim();
    expect(readFileSync(join(view, 'etc/added'), 'utf8')).to.equal('added\n');
    ok(cli('container', 'unmount', second));

    // A bad name fails before any work; a broken tar registers nothing.
    expect(cli('import', dir, 'Bad:Name').stderr).to.match(/^Error: invalid reference format "Bad:Name"/);
    const layers = ok(cli('layer', 'ls', '-q'));
    const broken = cli('import', '-', 'broken');
    expect(broken.code).to.equal(1);
    expect(ok(cli('layer', 'ls', '-q'))).to.equal(layers);
    expect(strata(['--root', root, 'import', '-'], { input: Buffer.alloc(1024, 9) }).stderr).to.match(/^Error: /);
    expect(ok(cli('layer', 'ls', '-q'))).to.equal(layers);
  });

  it('lists with the top-level images alias; a save that fails leaves no partial archive', function () {
    ok(cli('load', '-i', archive('1.tar', dockerArchive([base, top], { tags: ['app:1'] }))));
    expect(ok(cli('images'))).to.equal(ok(cli('image', 'ls')));
    // docker load takes gzip-compressed archives, from a file or a pipe.
    const gz = gzipSync(dockerArchive([base], { tags: ['gz:1'] }));
    expect(ok(cli('load', '-i', archive('gz.tar.gz', gz)))).to.equal('Loaded image: gz:1\n');
    expect(ok(strata(['--root', root, 'load'], { input: gz }))).to.equal('Loaded image: gz:1\n');
    const [shown] = JSON.parse(ok(cli('image', 'inspect', 'app:1')));
    // Someone edits a layer's files behind the store's back: the rebuilt tar no longer matches.
    writeFileSync(join(shown.GraphDriver.Data.UpperDir, 'etc/top'), 'TOP\n');
    const out = join(work, 'out.tar');
    const failed = cli('save', '-o', out, 'app:1');
    expect(failed.code).to.equal(1);
    expect(failed.stderr).to.match(/^Error: (layer content changed on disk|rebuilt layer tar has digest)/);
    expect(failed.stderr.trimEnd().split('\n')).to.have.length(1);
    expect(readdirSync(work).filter((name) => name.startsWith('out.tar'))).to.deep.equal([]);
  });

  it('fails with one line for unknown images and bad arguments', function () {
    const cases: Array<[string[], RegExp]> = [
      [['image', 'inspect', 'nosuch'], /^Error: no such image: nosuch\n$/],
      [['image', 'rm', 'nosuch:1'], /^Error: no such image: nosuch:1\n$/],
      [['image', 'tag', 'nosuch', 'x'], /^Error: no such image: nosuch\n$/],
      [['image', 'ls', '--filter', 'label=x'], /^Error: invalid filter "label=x"/],
      [['save', '-o', join(root ?? '/tmp', 'x.tar'), 'nosuch'], /^Error: no such image: nosuch\n$/],
      [['save', '--format', 'zip', 'x'], /^Error: invalid --format "zip"/],
      [['load', '-i', '/nonexistent.tar'], /^Error: ENOENT: no such file or directory, open '\/nonexistent.tar'\n$/],
    ];
    for (const [args, message] of cases) {
      const result = cli(...args);
      expect(result.code, args.join(' ')).to.not.equal(0);
      expect(result.stderr, args.join(' ')).to.match(message);
      expect(result.stdout, args.join(' ')).to.equal('');
    }
  });
});
