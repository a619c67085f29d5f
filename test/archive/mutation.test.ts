// Randomly damaged archives (seeded, so reproducible): every run either fails
// with an ArchiveError or applies and exports byte-exact; nothing crashes and
// nothing outside the layer directory changes.
import { expect } from 'chai';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ArchiveError } from '../../lib/archive/errors.js';
import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { applyBuffer, buildTar, exportBuffer, type TarEntry } from '../support/tar-builder.js';

const entries: TarEntry[] = [
  { name: 'dir/', type: '5' },
  { name: 'dir/file', data: 'f'.repeat(1500), mode: 0o4755, uid: 3 },
  // trusted.*, not user.*: tmpfs (the VM's /tmp, Linux 6.1) takes user.* only since 6.6.
  { name: 'x', pax: { path: `dir/${'p'.repeat(150)}`, 'SCHILY.xattr.trusted.k': 'v', mtime: '1.5' }, data: 'pax' },
  { name: '././@LongLink', type: 'L', data: `${'long/'.repeat(25)}name\0` },
  { name: 'ignored', data: 'gnu long name' },
  { name: 'dir/link', type: '2', linkname: '../../outside' },
  { name: 'dir/hard', type: '1', linkname: 'dir/file' },
  { name: 'fifo', type: '6' },
  { name: 'dir/.wh.gone' },
  { name: 'dir/file', data: 'replaced' },
];

describe('applyLayerArchive with randomly damaged archives', function () {
  const cleanups = new Cleanups();
  before(function () {
    if (!isRoot) this.skip();
  });
  afterEach(() => cleanups.release());

  it('fails cleanly or round-trips, for 150 seeded mutations', async function () {
    const original = buildTar(entries);
    const headerBlocks: number[] = [];
    for (let at = 0; at < original.length; at += 512) {
      if (original.subarray(at + 257, at + 262).toString('latin1') === 'ustar') headerBlocks.push(at, at + 512);
    }
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const outside = scratchDir(cleanups, 'outside');
    writeFileSync(join(outside, 'canary'), 'original');
    const outcomes: Record<string, number> = {};
    for (let round = 0; round < 150; round++) {
      const tar = Buffer.from(original);
      for (let k = 0, n = 1 + Math.floor(random() * 6); k < n; k++) {
        const block = headerBlocks[Math.floor(random() * headerBlocks.length)]!;
        tar[block + Math.floor(random() * 512)] = Math.floor(random() * 256);
      }
      // Mostly repair the checksums, so the damage reaches past checksum checks.
      if (random() < 0.8) {
        for (const at of headerBlocks) {
          const block = tar.subarray(at, at + 512);
          if (block.subarray(257, 262).toString('latin1') !== 'ustar') continue;
          block.fill(0x20, 148, 156);
          let sum = 0;
          for (const byte of block) sum += byte;
          block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
        }
      }
      const input = random() < 0.2 ? tar.subarray(0, Math.floor(random() * tar.length)) : tar;
      const dir = scratchDir(cleanups, 'layer');
      try {
        const result = await applyBuffer(input, dir, { whiteouts: random() < 0.5 ? 'overlay' : 'remove' });
        expect(await exportBuffer(dir, result.tarSplit, result.diffId), `round ${round}`).to.deep.equal(input);
        outcomes.applied = (outcomes.applied ?? 0) + 1;
      } catch (error) {
        expect(error, `round ${round}: ${String(error)}`).to.be.instanceOf(ArchiveError);
        const code = (error as ArchiveError).code;
        outcomes[code] = (outcomes[code] ?? 0) + 1;
      }
    }
    expect(readdirSync(outside)).to.deep.equal(['canary']);
    expect(readFileSync(join(outside, 'canary'), 'utf8')).to.equal('original');
    expect(outcomes.applied).to.be.above(10);
    expect(outcomes.ERR_ARCHIVE_CORRUPT).to.be.above(10);
  });
});
