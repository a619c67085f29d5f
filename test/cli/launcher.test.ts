// The installed command's launcher (scripts/cli-launcher.cjs), around a
// stand-in bundle: it runs the bundle as Node would run it, from a V8 code
// cache when it has one, and works the same when the cache cannot be used.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { Cleanups, scratchDir } from '../support/fixtures.js';

const launcher = resolve(import.meta.dirname, '../../scripts/cli-launcher.cjs');

const BUNDLE = `
const helper = require('./helper.cjs');
process.stdout.write(JSON.stringify({ helper, filename: __filename, dirname: __dirname, exports: module.exports === exports, argv: process.argv.slice(2) }) + '\\n');
process.exitCode = 3;
`;

describe('strata launcher', function () {
  const cleanups = new Cleanups();
  afterEach(() => cleanups.release());

  function install(): string {
    const dir = scratchDir(cleanups, 'launcher');
    writeFileSync(join(dir, 'strata.cjs'), readFileSync(launcher, 'utf8').replace('@BUNDLE_SHA256@', 'test'));
    writeFileSync(join(dir, 'strata-bundle.cjs'), BUNDLE);
    writeFileSync(join(dir, 'helper.cjs'), "module.exports = 'helped';");
    return dir;
  }

  function run(dir: string) {
    const result = spawnSync(process.execPath, [join(dir, 'strata.cjs'), 'a', '--b'], { encoding: 'utf8' });
    expect(result.stderr).to.equal('');
    expect(result.status).to.equal(3);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  }

  const cache = (dir: string) => join(dir, '.strata-bundle.v8cache');
  const identity = (file: string) => {
    const stat = statSync(file, { bigint: true });
    return `${stat.ino} ${stat.mtimeNs}`;
  };

  it('runs the bundle as a CommonJS module, and keeps its code cache for the next run', function () {
    const dir = install();
    const expected = { helper: 'helped', filename: join(dir, 'strata-bundle.cjs'), dirname: dir, exports: true, argv: ['a', '--b'] };
    expect(run(dir)).to.deep.equal(expected);
    const made = identity(cache(dir));
    expect(readFileSync(cache(dir), 'latin1')).to.match(new RegExp(`^test \\d+ \\d+ [\\d.]+ ${process.version} ${process.arch}\\n`));
    expect(run(dir)).to.deep.equal(expected);
    // Taken, so not written again.
    expect(identity(cache(dir))).to.equal(made);
  });

  it('compiles from source when the cache is damaged, stale or cannot be written, and replaces what it can', function () {
    const dir = install();
    run(dir);
    // Damaged past its key: V8 rejects it, and a fresh one replaces it.
    const text = readFileSync(cache(dir), 'latin1');
    const key = text.slice(0, text.indexOf('\n') + 1);
    writeFileSync(cache(dir), Buffer.concat([Buffer.from(key, 'latin1'), Buffer.alloc(4096, 7)]));
    const damaged = identity(cache(dir));
    expect(run(dir)).to.have.property('helper', 'helped');
    expect(identity(cache(dir))).to.not.equal(damaged);
    // The bundle edited: the key no longer matches.
    appendFileSync(join(dir, 'strata-bundle.cjs'), '\nprocess.stdout.write("edited\\n");\n');
    const result = spawnSync(process.execPath, [join(dir, 'strata.cjs')], { encoding: 'utf8' });
    expect(result.stdout).to.match(/\nedited\n$/);
    expect(readFileSync(cache(dir), 'latin1').slice(0, key.length)).to.not.equal(key);
    // Nowhere to write it: the command still works and leaves nothing behind.
    const unwritable = install();
    mkdirSync(cache(unwritable));
    expect(run(unwritable)).to.have.property('helper', 'helped');
    expect(readdirSync(unwritable).sort()).to.deep.equal(['.strata-bundle.v8cache', 'helper.cjs', 'strata-bundle.cjs', 'strata.cjs']);
  });
});
