import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { sha256 } from '../../lib/store/digest.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { tarOf, writeTree } from '../support/trees.js';

describe('strata layer', function () {
  const cleanups = new Cleanups();
  let root: string;
  let tar: string;

  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    root = await tmpfsDir(cleanups);
    const work = scratchDir(cleanups, 'work');
    writeTree(join(work, 'src'), { 'etc/motd': 'hello\n' });
    tar = tarOf(join(work, 'src'), join(work, 'layer.tar'));
  });
  afterEach(() => cleanups.release());

  it('prints its version as docker does (-v, --version) and exits 0', function () {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(strata(['--version'])).to.include({ code: 0, stdout: `${version}\n` });
    expect(strata(['-v'])).to.include({ code: 0, stdout: `${version}\n` });
  });

  it('imports, lists, inspects, exports byte-exact and removes', function () {
    const diffId = sha256(readFileSync(tar));
    const imported = strata(['--root', root, 'layer', 'import', tar]);
    expect(imported, imported.stderr).to.include({ code: 0, stdout: `${diffId}\n` });

    const again = strata(['layer', 'import', '-'], { input: readFileSync(tar), env: { STRATA_ROOT: root } });
    expect(again).to.include({ code: 0, stdout: `${diffId}\n` });
    expect(again.stderr).to.include('already exists');

    const table = strata(['--root', root, 'layer', 'ls']);
    expect(table.stdout.split('\n')[0]).to.match(/^CHAIN ID {3,}DIFF ID {3,}PARENT {3,}SIZE {3,}REFS {3,}CREATED$/);
    expect(table.stdout).to.include(diffId.slice(7, 19));
    expect(strata(['--root', root, 'layer', 'ls', '-q', '--no-trunc']).stdout).to.equal(`${diffId}\n`);
    const json = JSON.parse(strata(['--root', root, 'layer', 'ls', '--format', 'json']).stdout);
    expect(json).to.include({ chainId: diffId, diffId, size: 6 });

    const inspected = JSON.parse(strata(['--root', root, 'layer', 'inspect', diffId.slice(7, 15)]).stdout);
    expect(inspected).to.be.an('array').with.length(1);
    expect(inspected[0]).to.include({ chainId: diffId, parent: null });

    const exported = strata(['--root', root, 'layer', 'export', diffId]);
    expect(exported.code).to.equal(0);
    const out = join(root, 'out.tar');
    expect(strata(['--root', root, 'layer', 'export', '-o', out, diffId]).code).to.equal(0);
    expect(readFileSync(out).equals(readFileSync(tar))).to.equal(true);

    const removed = strata(['--root', root, 'layer', 'rm', diffId.slice(7, 19)]);
    expect(removed).to.include({ code: 0, stdout: `Deleted: ${diffId}\n` });
    expect(strata(['--root', root, 'layer', 'ls', '-q']).stdout).to.equal('');
  });

  it('fails with one line on stderr and a non-zero status', function () {
    const cases: Array<[string[], RegExp]> = [
      [['layer', 'rm', 'abcdef'], /^Error: no such layer: abcdef\n$/],
      [['layer', 'import', '/nonexistent.tar'], /^Error: ENOENT: no such file or directory, open '\/nonexistent.tar'\n$/],
      [['layer', 'import', tar, '--digest', 'md5:123'], /^Error: invalid --digest "md5:123"/],
      [['layer', 'ls', '--format', 'xml'], /^Error: invalid --format "xml"/],
      [['--storage-driver', 'aufs', 'layer', 'ls'], /^Error: unknown storage driver "aufs"/],
    ];
    for (const [args, message] of cases) {
      const result = strata(['--root', root, ...args]);
      expect(result.code, args.join(' ')).to.not.equal(0);
      expect(result.stderr, args.join(' ')).to.match(message);
      expect(result.stderr.trimEnd().split('\n'), args.join(' ')).to.have.length(1);
      expect(result.stdout, args.join(' ')).to.equal('');
    }
  });
});
