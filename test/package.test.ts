// The package as users get it: the cmake-js build is as good as node-gyp's,
// and the packed tarball installs and loads from its prebuild alone.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { ABI_VERSION } from '../lib/native/binding.js';
import { Cleanups, scratchDir } from './support/fixtures.js';

const root = resolve(import.meta.dirname, '..');

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): string {
  return execFileSync(command, args, { ...options, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('package', function () {
  const cleanups = new Cleanups();
  afterEach(() => cleanups.release());

  it('loads the cmake-js build, which makes real syscalls', function () {
    this.timeout(300_000);
    const built = join(root, 'build-cmake/build/Release/strata_native.node');
    if (!existsSync(built)) run('npm', ['run', 'build:cmake'], { cwd: root });
    const script = `
      import load from 'node-gyp-build';
      import { native } from './lib/native/binding.ts';
      const path = load.path(process.cwd());
      const error = await native.umount2('/nonexistent-strata', 0).catch((e) => e);
      console.log(JSON.stringify({ path, abi: native.abiVersion, code: error.code }));`;
    const out = run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, STRATAFS_PREBUILD: join(root, 'build-cmake') },
    });
    expect(JSON.parse(out)).to.deep.equal({ path: built, abi: ABI_VERSION, code: 'ENOENT' });
  });

  it('packs the prebuild, and the tarball installs and runs with no compiler and no build/', function () {
    this.timeout(300_000);
    if (!existsSync(join(root, 'prebuilds'))) run('npm', ['run', 'prebuild'], { cwd: root });
    const work = scratchDir(cleanups, 'pack');
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root })) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).to.include('prebuilds/linux-x64/stratafs.glibc.node');
    expect(files).to.include('dist/cli/strata.cjs');
    expect(files.filter((f) => f.startsWith('build/') || f.startsWith('test/'))).to.deep.equal([]);

    // A consumer: npm 11 runs no dependency install scripts, so nothing is compiled.
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), '{"name":"app","private":true}');
    run('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', join(work, packed[0]!.filename)], {
      cwd: app,
    });
    const installed = join(app, 'node_modules/stratafs');
    expect(readdirSync(installed)).to.not.include('build');
    // better-sqlite3 gets its binary from its own install step (prebuild-install
    // where allowed); stand in for it with ours so only stratafs's loading is tested.
    mkdirSync(join(app, 'node_modules/better-sqlite3/build'), { recursive: true });
    symlinkSync(join(root, 'node_modules/better-sqlite3/build/Release'), join(app, 'node_modules/better-sqlite3/build/Release'));

    // A PATH with node and the installed bin, and no compiler or make.
    const nodeOnly = join(work, 'node-only');
    mkdirSync(nodeOnly);
    symlinkSync(process.execPath, join(nodeOnly, 'node'));
    const noCompiler = { PATH: `${join(app, 'node_modules/.bin')}:${nodeOnly}`, HOME: work };
    const out = run('strata', ['info', '--format', 'json'], { cwd: app, env: noCompiler });
    expect(JSON.parse(out)).to.have.property('kernelVersion');
    expect(() => run('/bin/sh', ['-c', 'command -v cc || command -v g++ || command -v make'], { cwd: app, env: noCompiler })).to.throw();
  });
});
