import { expect } from 'chai';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { BuildContext, type FileHashes } from '../../lib/build/context.js';
import { Cleanups, scratchDir } from '../support/fixtures.js';
import { writeTree } from '../support/trees.js';

/** A FileHashes in memory that counts what it was asked. */
function countingHashes() {
  const known = new Map<string, Buffer>();
  const counts = { hits: 0, learned: 0 };
  const hashes: FileHashes = {
    get(files) {
      const found = new Map<string, Buffer>();
      for (const { path, stamp } of files) {
        const hash = known.get(`${path} ${stamp}`);
        if (hash) found.set(path, hash);
      }
      counts.hits += found.size;
      return found;
    },
    set(path, stamp, hash) {
      counts.learned++;
      known.set(`${path} ${stamp}`, hash);
    },
  };
  return { hashes, counts };
}

describe('build context', function () {
  const cleanups = new Cleanups();
  afterEach(() => cleanups.release());

  it('excludes what .dockerignore names, with exceptions, and reads the rest', async function () {
    const dir = scratchDir(cleanups, 'context');
    writeTree(dir, { '.dockerignore': '*.log\nbuild\n!build/keep\n', 'a.log': '', 'b.txt': '', 'build/x': '', 'build/keep': '', 'sub/c.log': '' });
    const context = await BuildContext.open(dir);
    expect(context.entries.map((e) => e.path)).to.deep.equal(['.dockerignore', 'b.txt', 'build/keep', 'sub', 'sub/c.log']);
    expect(context.sources('*.txt').map((e) => e.path)).to.deep.equal(['b.txt']);
    expect(() => context.sources('a.log')).to.throw(/excluded by \.dockerignore: a\.log/);
  });

  it('remembers the content hashes of settled files, and reads a changed one again', async function () {
    this.timeout(10_000);
    const dir = scratchDir(cleanups, 'context');
    writeTree(dir, { 'a.txt': 'alpha\n', 'b.txt': 'beta\n', 'sub/c.txt': 'gamma\n' });
    const fresh = countingHashes();
    // Just written: too recent to trust a stamp, so hashed and not remembered.
    const recent = await BuildContext.open(dir);
    recent.digest(recent.sources('.'), fresh.hashes);
    expect(fresh.counts).to.deep.equal({ hits: 0, learned: 0 });

    await sleep(2100); // past the settling time
    const { hashes, counts } = countingHashes();
    const first = await BuildContext.open(dir);
    const digest = first.digest(first.sources('.'), hashes);
    expect(counts).to.deep.equal({ hits: 0, learned: 3 });
    const again = await BuildContext.open(dir);
    expect(again.digest(again.sources('.'), hashes)).to.equal(digest);
    expect(counts).to.deep.equal({ hits: 3, learned: 3 });
    // The same digest as without remembered hashes.
    expect(again.digest(again.sources('.'))).to.equal(digest);
    // Remembered by the joined path: the context named another way finds them too.
    const respelled = await BuildContext.open(`${dir}/.//`);
    expect(respelled.digest(respelled.sources('.'), hashes)).to.equal(digest);
    expect(counts).to.deep.equal({ hits: 6, learned: 3 });

    writeFileSync(join(dir, 'a.txt'), 'ALPHA\n');
    chmodSync(join(dir, 'b.txt'), 0o600);
    const changed = await BuildContext.open(dir);
    expect(changed.digest(changed.sources('.'), hashes)).to.not.equal(digest);
    expect(counts.hits).to.equal(6 + 1); // only sub/c.txt was unchanged
  });
});
