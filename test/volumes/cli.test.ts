import { expect } from 'chai';
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Store } from '../../lib/store/store.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { tarOf, writeTree } from '../support/trees.js';

describe('strata volume', function () {
  const cleanups = new Cleanups();
  let root: string;
  let layer: string;

  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    root = await tmpfsDir(cleanups, '128m');
    const src = scratchDir(cleanups, 'image');
    writeTree(src, { 'etc/motd': 'hi\n' });
    const store = await Store.open({ root });
    try {
      const tar = tarOf(src, join(scratchDir(cleanups, 'tar'), 'image.tar'));
      layer = (await store.layers.import(createReadStream(tar), { explicit: true })).layer.chainId;
    } finally {
      store.close();
    }
  });
  afterEach(() => cleanups.release());

  const cli = (...args: string[]) => strata(['--root', root, ...args]);

  it('creates, lists, inspects, removes and prunes', function () {
    expect(cli('volume', 'create', 'web', '--label', 'tier=front', '-l', 'keep')).to.include({ code: 0, stdout: 'web\n' });
    const anonymous = cli('volume', 'create').stdout.trim();
    expect(anonymous).to.match(/^[0-9a-f]{64}$/);
    expect(cli('volume', 'create', 'tmp', '-o', 'type=tmpfs', '-o', 'device=tmpfs', '-o', 'o=size=1m').code).to.equal(0);

    expect(cli('volume', 'ls').stdout).to.equal(
      `DRIVER   VOLUME NAME\nlocal    ${anonymous}\nlocal    tmp\nlocal    web\n`,
    );
    expect(cli('volume', 'ls', '-q', '--filter', 'label=tier=front').stdout).to.equal('web\n');
    expect(cli('volume', 'ls', '-q', '-f', 'name=tm', '-f', 'driver=local').stdout).to.equal('tmp\n');
    expect(cli('volume', 'ls', '-q', '-f', 'dangling=true').stdout.split('\n').filter(Boolean)).to.have.length(3);
    const json = cli('volume', 'ls', '--format', 'json', '-f', 'name=web').stdout;
    expect(JSON.parse(json)).to.include({ Name: 'web', Driver: 'local', Scope: 'local' });

    writeFileSync(join(root, 'volumes/web/_data/index.html'), '<html></html>');
    const [web, tmp] = JSON.parse(cli('volume', 'inspect', '--size', 'web', 'tmp').stdout) as Array<Record<string, unknown>>;
    expect(web).to.deep.include({
      Name: 'web', Driver: 'local', Scope: 'local', Labels: { tier: 'front', keep: '' }, Options: null,
      Mountpoint: join(root, 'volumes/web/_data'), UsageData: { Size: 13, RefCount: 0 },
    });
    expect(web!.CreatedAt).to.match(/^\d{4}-\d\d-\d\dT/);
    expect(tmp).to.deep.include({ Options: { type: 'tmpfs', device: 'tmpfs', o: 'size=1m' } });

    const unconfirmed = cli('volume', 'prune');
    expect(unconfirmed).to.include({ code: 2, stdout: '' });
    expect(unconfirmed.stderr).to.match(/^Error: refusing to prune without confirmation: standard input is not a terminal; use -f\/--force\n$/);
    expect(cli('volume', 'prune', '-f').stdout).to.equal(`Deleted Volumes:\n${anonymous}\n\nTotal reclaimed space: 0B\n`);
    expect(cli('volume', 'prune', '-f', '--all', '--filter', 'label!=keep').stdout).to.equal('Total reclaimed space: 0B\n');
    expect(cli('volume', 'prune', '-fa').stdout).to.equal('Deleted Volumes:\nweb\n\nTotal reclaimed space: 13B\n');
    expect(cli('volume', 'rm', 'tmp')).to.include({ code: 0, stdout: 'tmp\n' });
    expect(cli('volume', 'ls', '-q').stdout).to.equal('');
  });

  it('refuses to remove a volume a container uses, even with -f, naming the container', function () {
    const id = cli('container', 'create', '-v', 'db:/var/lib/db', '--mount', 'type=volume,target=/cache', layer).stdout.trim();
    expect(id).to.match(/^[0-9a-f]{64}$/);
    for (const args of [['volume', 'rm', 'db'], ['volume', 'rm', '-f', 'db']]) {
      const result = cli(...args);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(`Error: remove db: volume is in use - [${id}]\n`);
    }
    expect(cli('volume', 'ls', '-q', '-f', 'dangling=false').stdout.split('\n').filter(Boolean)).to.have.length(2);
    expect(cli('volume', 'prune', '-fa').stdout).to.equal('Total reclaimed space: 0B\n');
    expect(cli('container', 'rm', '-v', id).code).to.equal(0);
    expect(cli('volume', 'ls', '-q').stdout).to.equal('db\n');
    expect(cli('volume', 'rm', 'db', 'missing').stderr).to.equal('Error: get missing: no such volume\n');
    expect(cli('volume', 'rm', '-f', 'missing').code).to.equal(0);
  });

  it('keeps owners apart', function () {
    expect(cli('volume', 'create', '--owner', 'alice', 'alice-data').code).to.equal(0);
    const refused = cli('container', 'create', '--owner', 'bob', '-v', 'alice-data:/d', layer);
    expect(refused).to.include({ code: 1, stderr: 'Error: volume alice-data belongs to another owner\n' });
    expect(cli('container', 'create', '--owner', 'alice', '-v', 'alice-data:/d', layer).code).to.equal(0);
    const [inspected] = JSON.parse(cli('volume', 'inspect', 'alice-data').stdout) as Array<Record<string, unknown>>;
    expect(inspected!.Owner).to.equal('alice');
  });

  it('reports bad input on one line, with Docker messages', function () {
    const cases: Array<[string[], number, string]> = [
      [['volume', 'create', 'x'], 1, 'Error: volume name is too short, names should be at least two alphanumeric characters\n'],
      [['volume', 'create', 'ok', '-o', 'bogus=1'], 1, 'Error: invalid option: "bogus"\n'],
      [['volume', 'create', 'ok', '-o', 'type=tmpfs'], 1, 'Error: missing required option: "device"\n'],
      [['volume', 'create', 'ok', '-o', 'novalue'], 2, 'Error: invalid argument "novalue" for "--opt" flag: expected key=value\n'],
      [['volume', 'create', 'ok', '-d', 'nfs'], 2, 'Error: volume driver "nfs" is not supported: only "local" is\n'],
      [['volume', 'ls', '-f', 'colour=red'], 2, "Error: invalid filter 'colour'\n"],
      [['volume', 'ls', '-f', 'dangling=maybe'], 2, "Error: invalid filter 'dangling=maybe'\n"],
      [['volume', 'inspect', 'nope'], 1, 'Error: get nope: no such volume\n'],
      [['container', 'create', '--mount', 'type=tmpfs,target=/t,src=x', layer], 2,
        'Error: invalid argument "type=tmpfs,target=/t,src=x" for "--mount" flag: invalid mount config for type "tmpfs": field Source must not be specified\n'],
      [['container', 'create', '-v', '/data:rw', layer], 2, `Error: invalid argument "/data:rw" for "-v, --volume" flag: invalid volume specification: '/data:rw'\n`],
    ];
    for (const [args, code, stderr] of cases) {
      const result = cli(...args);
      expect(result.stderr, args.join(' ')).to.equal(stderr);
      expect(result.code, args.join(' ')).to.equal(code);
    }
    expect(cli('volume', 'ls', '-q').stdout).to.equal('');
    expect(cli('container', 'ls', '-q').stdout).to.equal('');
  });
});
