// scanTree: one native pass that lists a tree with every entry's lstat, as the
// build context reads it.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { scanTree } from '../../lib/native/tree.js';
import { Cleanups, isRoot, rejection, scratchDir } from '../support/fixtures.js';

describe('scanTree', function () {
  const cleanups = new Cleanups();
  afterEach(() => cleanups.release());

  it('lists every entry, parents first and names in byte order, with lstat fields and stamps', async function () {
    const dir = scratchDir(cleanups, 'scan');
    mkdirSync(join(dir, 'b/inner'), { recursive: true });
    writeFileSync(join(dir, 'b/inner/deep.txt'), 'deep');
    writeFileSync(join(dir, 'a.txt'), 'hello');
    writeFileSync(join(dir, 'Z'), '');
    symlinkSync('b', join(dir, 'link')); // listed, never followed
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    if (isRoot) chownSync(join(dir, 'a.txt'), 1234, 5678);
    chmodSync(join(dir, 'a.txt'), 0o4750); // after the chown, which clears setuid

    const entries = await scanTree(dir);
    expect(entries.map((e) => [e.path, e.type])).to.deep.equal([
      ['Z', 'file'], ['a.txt', 'file'], ['b', 'directory'], ['b/inner', 'directory'], ['b/inner/deep.txt', 'file'],
      ['fifo', 'other'], ['link', 'symlink'],
    ]);
    for (const entry of entries) {
      const st = lstatSync(join(dir, entry.path), { bigint: true });
      expect(entry).to.include({ mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid) });
      if (entry.type === 'file') expect(entry.size).to.equal(Number(st.size));
      expect(Math.floor(entry.mtimeMs)).to.equal(Number(st.mtimeNs / 1_000_000n));
      // The same text as from a bigint lstat: hashes remembered by earlier builds stay valid.
      expect(entry.stamp).to.equal(`${st.dev}:${st.ino}:${st.size}:${st.mode}:${st.mtimeNs}:${st.ctimeNs}`);
    }
    expect(entries[1]).to.include({ mode: 0o4750, size: 5, ...(isRoot && { uid: 1234, gid: 5678 }) });
  });

  it('lists an empty directory as nothing and fails on a missing one like fs does', async function () {
    const dir = scratchDir(cleanups, 'empty');
    expect(await scanTree(dir)).to.deep.equal([]);
    const missing = await rejection(scanTree(join(dir, 'missing')));
    expect(missing).to.include({ code: 'ENOENT', syscall: 'open', path: join(dir, 'missing') });
    writeFileSync(join(dir, 'file'), '');
    expect(await rejection(scanTree(join(dir, 'file')))).to.include({ code: 'ENOTDIR' });
  });
});
