import { expect } from 'chai';
import { lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { native } from '../../lib/native/binding.js';
import { openInTree } from '../../lib/native/resolve.js';
import { Cleanups, fdsBelow, rejection, scratchDir } from '../support/fixtures.js';



describe('native openInTree (openat2 RESOLVE_IN_ROOT)', function () {
  const cleanups = new Cleanups();
  let root: string;
  let outside: string;
  afterEach(() => cleanups.release());
  beforeEach(function () {
    root = scratchDir(cleanups, 'rootfs');
    outside = scratchDir(cleanups, 'host');
    mkdirSync(join(root, 'etc'));
    mkdirSync(join(root, 'srv/data'), { recursive: true });
  });

  it('opens a path inside the tree as an O_PATH fd', async function () {
    await using fd = await openInTree(root, '/srv/data');
    expect(readlinkSync(`/proc/self/fd/${fd.fd}`)).to.equal(join(root, 'srv/data'));
    await using top = await openInTree(root, '/');
    expect(readlinkSync(`/proc/self/fd/${top.fd}`)).to.equal(root);
  });

  it('resolves absolute symlinks and .. inside the tree, never outside it', async function () {
    symlinkSync(outside, join(root, 'escape'));
    symlinkSync('/etc', join(root, 'srv/etc-link'));
    symlinkSync('../../../../../..', join(root, 'srv/up'));
    await using a = await openInTree(root, '/srv/etc-link');
    expect(readlinkSync(`/proc/self/fd/${a.fd}`)).to.equal(join(root, 'etc'));
    await using b = await openInTree(root, '/srv/up/etc');
    expect(readlinkSync(`/proc/self/fd/${b.fd}`)).to.equal(join(root, 'etc'));
    await using c = await openInTree(root, '/../../etc');
    expect(readlinkSync(`/proc/self/fd/${c.fd}`)).to.equal(join(root, 'etc'));
    // The link to the host's directory leads to the same path inside the tree, which is missing.
    expect(await rejection(openInTree(root, '/escape'))).to.include({ code: 'ENOENT', syscall: 'openat2', path: '/escape' });
  });

  it('creates missing directories and files inside the tree, even through a symlink to the host', async function () {
    symlinkSync(outside, join(root, 'data'));
    await using dir = await openInTree(root, '/data/a/b', { create: true });
    expect(readlinkSync(`/proc/self/fd/${dir.fd}`)).to.equal(join(root, outside, 'a/b'));
    expect(readdirSync(outside)).to.deep.equal([]);
    await using file = await openInTree(root, '/etc/conf/app.ini', { create: true, kind: 'file' });
    expect(lstatSync(join(root, 'etc/conf/app.ini')).isFile()).to.equal(true);
    expect(readlinkSync(`/proc/self/fd/${file.fd}`)).to.equal(join(root, 'etc/conf/app.ini'));
    // An existing file is opened, not replaced.
    writeFileSync(join(root, 'etc/keep'), 'x');
    await using kept = await openInTree(root, '/etc/keep', { create: true, kind: 'file' });
    expect(readlinkSync(`/proc/self/fd/${kept.fd}`)).to.equal(join(root, 'etc/keep'));
    expect(lstatSync(join(root, 'etc/keep')).size).to.equal(1);
  });

  it('fails clearly and leaks no fd', async function () {
    writeFileSync(join(root, 'file'), '');
    expect(await rejection(openInTree(root, '/missing'))).to.include({ code: 'ENOENT', syscall: 'openat2', path: '/missing' });
    expect(await rejection(openInTree(root, '/file/below', { create: true }))).to.include({ code: 'ENOTDIR' });
    expect(await rejection(openInTree(join(root, 'nope'), '/x'))).to.include({ code: 'ENOENT', syscall: 'open' });
    symlinkSync('/loop', join(root, 'loop'));
    expect(await rejection(openInTree(root, '/loop/x', { create: true }))).to.include({ code: 'ELOOP' });
    expect(fdsBelow(root)).to.deep.equal([]);
  });

  it('throws TypeErrors on bad arguments instead of crashing', function () {
    const call = native.openInTree as unknown as (...args: unknown[]) => unknown;
    const bad: Array<[string, () => unknown]> = [
      ['no args', () => call()],
      ['root not a string', () => call(1, '/x', false, 'directory')],
      ['path with NUL', () => call(root, '/x\0y', false, 'directory')],
      ['create not a boolean', () => call(root, '/x', 'yes', 'directory')],
      ['unknown kind', () => call(root, '/x', true, 'socket')],
    ];
    for (const [what, fn] of bad) expect(fn, what).to.throw(TypeError);
  });
});
