// Archives written by GNU tar (gnu, pax, ustar; gzip and zstd): applying them
// gives what `tar -x` gives, the DiffID is the sha256 of the tar, and the
// export rebuilds the archive byte-exact.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import {
  createReadStream, linkSync, lstatSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';

import { applyLayerArchive } from '../../lib/archive/apply.js';
import { Cleanups, isRoot, scratchDir } from '../support/fixtures.js';
import { buildTar, chunked, exportBuffer, sha256, snapshot, xattrsBelow } from '../support/tar-builder.js';
import { userXattrsWork } from '../support/vm.js';

// cap_net_bind_service+ep, as a v2 security.capability value.
const CAPABILITY = '0x0100000200040000000000000000000000000000';

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A tree with every entry type, odd modes, owners, xattrs, long names, a sparse file. */
function makeTree(root: string, userXattrs: boolean): void {
  mkdirSync(join(root, 'etc/deep'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/empty'), '');
  writeFileSync(join(root, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 123, 'abcdefg'));
  const setuid = join(root, 'setuid');
  writeFileSync(setuid, '#!/bin/sh\n');
  run('chown', ['1234:5678', setuid]);
  run('chmod', ['6755', setuid]);
  mkdirSync(join(root, 'sticky'));
  run('chmod', ['1777', join(root, 'sticky')]);
  symlinkSync('../etc/passwd', join(root, 'etc/deep/link'));
  symlinkSync('/nonexistent/absolute', join(root, 'dangling'));
  run('chown', ['-h', '42:43', join(root, 'dangling')]);
  linkSync(join(root, 'etc/passwd'), join(root, 'hardlink'));
  run('mkfifo', [join(root, 'fifo')]);
  run('mknod', [join(root, 'null'), 'c', '1', '3']);
  run('mknod', [join(root, 'blk'), 'b', '7', '200']);
  const long = join(root, 'a'.repeat(120), 'b'.repeat(150));
  mkdirSync(long, { recursive: true });
  writeFileSync(join(long, `${'c'.repeat(200)}.txt`), 'long name\n');
  symlinkSync('t'.repeat(180), join(root, 'longlink'));
  // Fits ustar only through its prefix field.
  mkdirSync(join(root, 'p'.repeat(90)));
  writeFileSync(join(root, 'p'.repeat(90), 'q'.repeat(40)), 'prefixed\n');
  const ping = join(root, 'ping');
  writeFileSync(ping, 'binary');
  run('chmod', ['755', ping]);
  run('setfattr', ['-n', 'security.capability', '-v', CAPABILITY, ping]);
  if (userXattrs) {
    run('setfattr', ['-n', 'user.comment', '-v', 'hello world', join(root, 'etc/passwd')]);
    run('setfattr', ['-n', 'user.dir', '-v', 'yes', join(root, 'etc')]);
  }
  const sparse = join(root, 'sparse');
  run('truncate', ['-s', '64M', sparse]);
  run('dd', ['if=/dev/urandom', `of=${sparse}`, 'bs=4096', 'count=2', 'seek=1000', 'conv=notrunc', 'status=none']);
  run('dd', ['if=/dev/urandom', `of=${sparse}`, 'bs=4096', 'count=1', 'seek=16000', 'conv=notrunc', 'status=none']);
  utimesSync(join(root, 'etc/passwd'), 1_000_000_000.5, 1_234_567_890.25);
  utimesSync(join(root, 'etc'), 1_000_000_000, 1_500_000_000);
}

function tarFlags(format: string): string[] {
  const flags = [`--format=${format}`, '--numeric-owner'];
  if (format !== 'ustar') flags.push('--sparse');
  if (format === 'pax') flags.push('--xattrs', '--xattrs-include=*');
  return flags;
}

describe('applyLayerArchive with archives from GNU tar', function () {
  const cleanups = new Cleanups();
  let source: string;
  // tmpfs (the VM's /tmp, on Linux 6.1) has user.* xattrs only since 6.6.
  let userXattrs = false;
  before(function () {
    if (!isRoot) this.skip();
    source = scratchDir(cleanups, 'source');
    userXattrs = userXattrsWork(source);
    makeTree(source, userXattrs);
  });
  after(() => cleanups.release());
  const each = new Cleanups();
  afterEach(() => each.release());

  for (const format of ['gnu', 'pax', 'ustar']) {
    it(`applies a ${format} archive like tar -x, with DiffID = sha256 and a byte-exact export`, async function () {
      const work = scratchDir(each, format);
      const archive = join(work, 'layer.tar');
      // ustar can neither hold the long names nor the 64M sparse file's size: leave them out.
      const exclude = format === 'ustar' ? ['--exclude=./aaaa*', '--exclude=./longlink', '--exclude=./sparse'] : [];
      run('tar', ['-cf', archive, ...tarFlags(format), ...exclude, '-C', source, '.']);
      const expected = join(work, 'expected');
      mkdirSync(expected);
      run('tar', ['-xf', archive, '--numeric-owner', '--same-owner', '-p', ...(format === 'pax' ? ['--xattrs', '--xattrs-include=*'] : []), '-C', expected]);

      const dir = join(work, 'applied');
      mkdirSync(dir);
      const bytes = readFileSync(archive);
      const result = await applyLayerArchive(createReadStream(archive), dir, { whiteouts: 'overlay' });
      expect(result.diffId).to.equal(sha256(bytes));
      const sum = execFileSync('sha256sum', [archive], { encoding: 'utf8' }).split(' ')[0];
      expect(result.diffId).to.equal(`sha256:${sum}`);
      expect(result.tarSize).to.equal(bytes.length);
      expect(result.compression).to.equal('none');
      expect(snapshot(dir)).to.deep.equal(snapshot(expected));
      expect(xattrsBelow(dir)).to.deep.equal(xattrsBelow(expected));
      if (format === 'pax') {
        expect(xattrsBelow(dir)['ping']).to.deep.equal({ 'security.capability': CAPABILITY });
        if (userXattrs) expect(xattrsBelow(dir)['etc']).to.have.property('user.dir');
      }
      expect(lstatSync(join(dir, 'setuid')).mode & 0o7777).to.equal(0o6755);
      if (format !== 'ustar') {
        // Holes stay holes: 64 MiB of size, a few blocks of data.
        const st = lstatSync(join(dir, 'sparse'));
        expect(st.size).to.equal(64 * 1024 * 1024);
        expect(st.blocks * 512).to.be.below(1024 * 1024);
      }
      expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(bytes);
    });
  }

  for (const version of ['0.0', '0.1', '1.0']) {
    it(`applies PAX sparse ${version} files and exports them byte-exact`, async function () {
      const work = scratchDir(each, 'sparse');
      const archive = join(work, 'layer.tar');
      run('tar', ['-cf', archive, '--format=pax', '--sparse', `--sparse-version=${version}`, '-C', source, 'sparse', 'big.bin']);
      const dir = join(work, 'applied');
      mkdirSync(dir);
      const bytes = readFileSync(archive);
      const result = await applyLayerArchive(createReadStream(archive), dir, { whiteouts: 'overlay' });
      expect(readFileSync(join(dir, 'sparse')).equals(readFileSync(join(source, 'sparse')))).to.equal(true);
      expect(lstatSync(join(dir, 'sparse')).blocks * 512).to.be.below(1024 * 1024);
      expect(result.contentSize).to.equal(64 * 1024 * 1024 + 3 * 1024 * 1024 + 123);
      expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(bytes);
    });
  }

  for (const [compression, tool] of [['gzip', 'gzip'], ['zstd', 'zstd']] as const) {
    it(`detects and decompresses ${compression}, hashing the uncompressed tar`, async function () {
      const work = scratchDir(each, compression);
      const archive = join(work, 'layer.tar');
      run('tar', ['-cf', archive, ...tarFlags('pax'), '-C', source, '.']);
      run(tool, ['-q', '-k', archive]);
      const compressed = `${archive}.${compression === 'gzip' ? 'gz' : 'zst'}`;
      const dir = join(work, 'applied');
      mkdirSync(dir);
      const progress: number[] = [];
      const result = await applyLayerArchive(createReadStream(compressed), dir, {
        whiteouts: 'overlay',
        onProgress: (n) => progress.push(n),
      });
      const bytes = readFileSync(archive);
      expect(result.compression).to.equal(compression);
      expect(result.diffId).to.equal(sha256(bytes));
      expect(result.tarSize).to.equal(bytes.length);
      expect(progress.at(-1)).to.equal(lstatSync(compressed).size);
      expect(readFileSync(join(dir, 'big.bin')).equals(readFileSync(join(source, 'big.bin')))).to.equal(true);
      expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(bytes);
    });
  }

  it('reads a layer in place from a range of a larger file, through more buffers than it reuses', async function () {
    const work = scratchDir(each, 'range');
    // 20 MiB of distinct content: a reused buffer overwritten too early would change files.
    const entries = Array.from({ length: 10 }, (_, i) => ({ name: `part${i}`, data: Buffer.alloc((2 << 20) + i * 4099, `${i}-abcdefghij`) }));
    const tar = buildTar(entries);
    const before = Buffer.alloc(1000, 'x');
    const file = join(work, 'outer');
    writeFileSync(file, Buffer.concat([before, tar, Buffer.alloc(777, 'y')]));
    const handle = await open(file, 'r');
    try {
      const dir = scratchDir(each, 'applied');
      const progress: number[] = [];
      const result = await applyLayerArchive({ file: handle, start: before.length, length: tar.length }, dir, {
        whiteouts: 'overlay',
        onProgress: (n) => progress.push(n),
      });
      expect(result.diffId).to.equal(sha256(tar));
      expect(result.tarSize).to.equal(tar.length);
      expect(progress.at(-1)).to.equal(tar.length);
      for (const entry of entries) expect(readFileSync(join(dir, entry.name)).equals(entry.data)).to.equal(true);
      expect(await exportBuffer(dir, result.tarSplit, result.diffId)).to.deep.equal(tar);

      // A range past the end of the file is a truncated layer.
      const cut = await applyLayerArchive({ file: handle, start: before.length, length: tar.length + 5000 }, scratchDir(each, 'cut'), {
        whiteouts: 'overlay',
      }).catch((e: unknown) => e);
      expect(cut).to.include({ code: 'ERR_ARCHIVE_TRUNCATED' });
      expect((cut as Error).message).to.include('the file ends');
    } finally {
      await handle.close();
    }

    // A compressed range goes through the decompressor.
    const gz = join(work, 'layer.tar');
    writeFileSync(gz, tar);
    run('gzip', ['-q', gz]);
    const packed = await open(`${gz}.gz`, 'r');
    try {
      const { size } = await packed.stat();
      const result = await applyLayerArchive({ file: packed, start: 0, length: size }, scratchDir(each, 'gz'), { whiteouts: 'overlay' });
      expect(result).to.include({ compression: 'gzip', diffId: sha256(tar) });
    } finally {
      await packed.close();
    }
  });

  it('rejects corrupt and truncated gzip and zstd data with ERR_ARCHIVE_CORRUPT', async function () {
    const work = scratchDir(each, 'cut');
    const archive = join(work, 'layer.tar');
    run('tar', ['-cf', archive, '-C', source, 'etc', 'big.bin']);
    run('gzip', ['-k', archive]);
    run('zstd', ['-q', '-k', archive]);
    const gz = readFileSync(`${archive}.gz`);
    const zst = readFileSync(`${archive}.zst`);
    const inputs = [
      Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5]),
      Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 9, 9, 9, 9, 9]),
      gz.subarray(0, gz.length - 9),
      zst.subarray(0, zst.length >> 1),
    ];
    for (const head of inputs) {
      const dir = scratchDir(each, 'bad');
      const error = await applyLayerArchive(chunked(head), dir, { whiteouts: 'overlay' }).catch((e: unknown) => e);
      expect(error).to.include({ name: 'ArchiveError', code: 'ERR_ARCHIVE_CORRUPT' });
    }
  });

  it('closes the input stream when applying fails', async function () {
    const work = scratchDir(each, 'close');
    const archive = join(work, 'bad.tar');
    writeFileSync(archive, Buffer.alloc(4096, 'x'));
    const stream = createReadStream(archive);
    const error = await applyLayerArchive(stream, work, { whiteouts: 'overlay' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_ARCHIVE_CORRUPT' });
    expect(stream.destroyed).to.equal(true);
    const unopened = createReadStream(archive);
    const missing = await applyLayerArchive(unopened, join(work, 'missing'), { whiteouts: 'overlay' }).catch((e: unknown) => e);
    expect(missing).to.include({ code: 'ENOENT' });
    expect(unopened.destroyed).to.equal(true);
    for (const s of [stream, unopened]) if (!s.closed) await once(s, 'close');
  });

  it('rejects a DiffID mismatch', async function () {
    const work = scratchDir(each, 'digest');
    const archive = join(work, 'layer.tar');
    run('tar', ['-cf', archive, '-C', source, 'etc']);
    const dir = join(work, 'applied');
    mkdirSync(dir);
    const wrong = `sha256:${'0'.repeat(64)}`;
    const error = await applyLayerArchive(createReadStream(archive), dir, { whiteouts: 'overlay', expectedDiffId: wrong })
      .catch((e: unknown) => e);
    expect(error).to.include({ code: 'ERR_ARCHIVE_DIGEST_MISMATCH' });
    expect((error as Error).message).to.include(sha256(readFileSync(archive)));
    const bad = await applyLayerArchive(createReadStream(archive), dir, { whiteouts: 'overlay', expectedDiffId: 'md5:1' })
      .catch((e: unknown) => e);
    expect(bad).to.be.instanceOf(TypeError);
  });

  it('stops on abort', async function () {
    const work = scratchDir(each, 'abort');
    const controller = new AbortController();
    controller.abort();
    const error = await applyLayerArchive(chunked(Buffer.alloc(1024)), work, { whiteouts: 'overlay', signal: controller.signal })
      .catch((e: unknown) => e);
    expect(error).to.have.property('name', 'AbortError');

    const midway = new AbortController();
    const tar = buildTar([{ name: 'big', data: Buffer.alloc(3 << 20, 1) }]);
    async function* slowly(): AsyncGenerator<Buffer> {
      for (let at = 0; at < tar.length; at += 65536) {
        await new Promise((resolve) => setImmediate(resolve));
        yield tar.subarray(at, at + 65536);
      }
    }
    const stopped = await applyLayerArchive(slowly(), scratchDir(each, 'midway'), {
      whiteouts: 'overlay',
      signal: midway.signal,
      onProgress: (n) => n > 200_000 && midway.abort(),
    }).catch((e: unknown) => e);
    expect(stopped).to.have.property('name', 'AbortError');
  });
});
