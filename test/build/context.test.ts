import { expect } from 'chai';
import { chmodSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { BuildContext, fineGrainedDevice, type FileHashes } from '../../lib/build/context.js';
import { Cleanups, scratchDir } from '../support/fixtures.js';
import { writeTree } from '../support/trees.js';

/** A FileHashes in memory that records what it found: a file's name, or "sources" for a digest as a whole. */
function countingHashes(dir: string) {
  const known = new Map<string, Buffer>();
  const counts = { hits: [] as string[], learned: 0 };
  const hashes: FileHashes = {
    get(files) {
      const found = new Map<string, Buffer>();
      for (const { path, stamp } of files) {
        const hash = known.get(`${path} ${stamp}`);
        if (hash) found.set(path, hash);
      }
      counts.hits.push(...[...found.keys()].map((path) => (path.startsWith(dir) ? relative(dir, path) : path.split(' ')[0]!)));
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
    const fresh = countingHashes(dir);
    const atOnce = fineGrainedDevice(dir) !== undefined;
    // Just written: with multigrain timestamps the stamps are trusted at once;
    // elsewhere too recent to trust, so hashed and not remembered.
    const recent = await BuildContext.open(dir);
    recent.digest(recent.sources('.'), fresh.hashes);
    expect(fresh.counts).to.deep.equal({ hits: [], learned: atOnce ? 4 : 0 });

    if (!atOnce) await sleep(2100); // past the settling time
    const { hashes, counts } = countingHashes(dir);
    const first = await BuildContext.open(dir);
    const digest = first.digest(first.sources('.'), hashes);
    // Each file, and the digest as a whole.
    expect(counts).to.deep.equal({ hits: [], learned: 4 });
    const again = await BuildContext.open(dir);
    expect(again.digest(again.sources('.'), hashes)).to.equal(digest);
    expect(counts).to.deep.equal({ hits: ['sources'], learned: 4 });
    // The same digest as without remembered hashes.
    expect(again.digest(again.sources('.'))).to.equal(digest);
    // Remembered by the joined path: the context named another way finds it too.
    const respelled = await BuildContext.open(`${dir}/.//`);
    expect(respelled.digest(respelled.sources('.'), hashes)).to.equal(digest);
    expect(counts.hits).to.deep.equal(['sources', 'sources']);
    // Other sources of the same context: a digest of their own, from the files' hashes.
    const sub = again.digest(again.sources('sub'), hashes);
    expect(sub).to.not.equal(digest);
    expect(counts.hits.slice(2)).to.deep.equal(['sub/c.txt']);
    expect(again.digest(again.sources('sub'))).to.equal(sub);

    writeFileSync(join(dir, 'a.txt'), 'ALPHA\n');
    chmodSync(join(dir, 'b.txt'), 0o600);
    const changed = await BuildContext.open(dir);
    expect(changed.digest(changed.sources('.'), hashes)).to.not.equal(digest);
    // Two files changed (too recent to trust without multigrain timestamps): only sub/c.txt was unchanged.
    expect(counts.hits.slice(3)).to.deep.equal(['sub/c.txt']);
  });

  it('sees a change of the same size made right after a stamp was read', async function () {
    const dir = scratchDir(cleanups, 'context');
    writeTree(dir, { 'a.txt': 'alpha\n' });
    if (fineGrainedDevice(dir) === undefined) await sleep(2100); // past the settling time
    const { hashes } = countingHashes(dir);
    const first = await BuildContext.open(dir);
    const digest = first.digest(first.sources('.'), hashes);
    // Within the same clock tick as the stat that read its stamp.
    writeFileSync(join(dir, 'a.txt'), 'ALPHA\n');
    const changed = await BuildContext.open(dir);
    expect(changed.digest(changed.sources('.'), hashes)).to.not.equal(digest);
    expect(changed.digest(changed.sources('.'))).to.not.equal(digest);
  });
});
