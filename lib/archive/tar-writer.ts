// Writes a layer tar of a list of changes, in the form Docker's layer tars
// use: changed and added entries with their content read from a directory
// showing the merged tree, deletions as AUFS whiteouts (.wh.<name>).
import { closeSync, constants, lstatSync, openSync, readSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';

import type { FileBytes } from '../native/archive.js';
import { getXattrSync, listXattrsSync } from '../native/fs.js';
import type { Change } from './changes.js';

const BLOCK = 512;

interface Header {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: '0' | '1' | '2' | '3' | '4' | '5' | '6' | 'x';
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** PAX records; values are bytes (an xattr value may be binary). */
  pax?: Record<string, string | Buffer>;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0');
}

function fits(value: number, width: number): boolean {
  return value >= 0 && value < 8 ** (width - 1);
}

function ustarBlock(h: Header): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(h.name, 0, 100);
  block.write(octal(h.mode & 0o7777, 8), 100);
  block.write(octal(fits(h.uid, 8) ? h.uid : 0, 8), 108);
  block.write(octal(fits(h.gid, 8) ? h.gid : 0, 8), 116);
  block.write(octal(fits(h.size, 12) ? h.size : 0, 12), 124);
  block.write(octal(Math.max(0, h.mtime), 12), 136);
  block.write(' '.repeat(8), 148);
  block.write(h.type, 156);
  if (h.linkname) block.write(h.linkname, 157, 100);
  block.write('ustar\u000000', 257);
  block.write(octal(h.devmajor ?? 0, 8), 329);
  block.write(octal(h.devminor ?? 0, 8), 337);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${octal(sum, 7)}\u0000`, 148);
  return block;
}

function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** A PAX record is "<length> <key>=<value>\n", the length counting itself. */
function paxRecord(key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

/** The header blocks for an entry: a PAX extension first when ustar cannot hold it. */
export function headerBlocks(h: Header): Buffer[] {
  const pax: Record<string, string | Buffer> = { ...h.pax };
  if (Buffer.byteLength(h.name) > 100) pax.path = h.name;
  if (h.linkname && Buffer.byteLength(h.linkname) > 100) pax.linkpath = h.linkname;
  if (!fits(h.size, 12)) pax.size = String(h.size);
  if (!fits(h.uid, 8)) pax.uid = String(h.uid);
  if (!fits(h.gid, 8)) pax.gid = String(h.gid);
  const keys = Object.keys(pax).sort();
  if (keys.length === 0) return [ustarBlock(h)];
  const data = Buffer.concat(keys.map((k) => paxRecord(k, pax[k]!)));
  const paxName = `${dirname(h.name)}/PaxHeaders.0/${basename(h.name)}`.slice(0, 99);
  const extension = ustarBlock({ name: paxName, mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: h.mtime, type: 'x' });
  return [extension, data, padding(data.length), ustarBlock(h)];
}

function xattrsOf(path: string): Record<string, Buffer> {
  const pax: Record<string, Buffer> = {};
  for (const name of listXattrsSync(path).sort()) pax[`SCHILY.xattr.${name}`] = getXattrSync(path, name);
  return pax;
}

/** What changesArchive yields at a time: small entries are gathered up to this, large files come in pieces of it. */
const CHUNK = 1 << 20;

/**
 * Gathers the archive's pieces into chunks of about CHUNK bytes: a layer of
 * many small files would otherwise reach its consumer (hashing, the native
 * applier) as thousands of tiny buffers, one async step each.
 */
class ChunkBuffer {
  private pieces: Buffer[] = [];
  private size = 0;

  add(...pieces: Buffer[]): void {
    for (const piece of pieces) {
      this.pieces.push(piece);
      this.size += piece.length;
    }
  }

  get full(): boolean {
    return this.size >= CHUNK;
  }

  get empty(): boolean {
    return this.size === 0;
  }

  take(): Buffer {
    const chunk = this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.size);
    this.pieces = [];
    this.size = 0;
    return chunk;
  }
}

/** A regular file's `size` bytes, in pieces of at most CHUNK; a file that changed size is an error. */
function* fileContent(path: string, size: number, changePath: string): Generator<Buffer> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let offset = 0;
    while (offset < size) {
      const piece = Buffer.allocUnsafe(Math.min(CHUNK, size - offset));
      let filled = 0;
      while (filled < piece.length) {
        const read = readSync(fd, piece, filled, piece.length - filled, offset + filled);
        if (read === 0) throw new Error(`${changePath} changed size while it was being archived`);
        filled += read;
      }
      offset += filled;
      yield piece;
    }
    if (readSync(fd, Buffer.alloc(1), 0, 1, size) !== 0) throw new Error(`${changePath} changed size while it was being archived`);
  } finally {
    closeSync(fd);
  }
}

/**
 * A large file read ahead on the thread pool: the next piece is being read
 * while this one is hashed and indexed on other threads.
 */
async function* largeFileContent(path: string, size: number, changePath: string): AsyncGenerator<Buffer> {
  const file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  const readPiece = async (offset: number): Promise<Buffer> => {
    const piece = Buffer.allocUnsafe(Math.min(CHUNK, size - offset));
    for (let filled = 0; filled < piece.length; ) {
      const { bytesRead } = await file.read(piece, filled, piece.length - filled, offset + filled);
      if (bytesRead === 0) throw new Error(`${changePath} changed size while it was being archived`);
      filled += bytesRead;
    }
    return piece;
  };
  let next: Promise<Buffer> | undefined = readPiece(0);
  try {
    for (let offset = 0; offset < size; ) {
      const piece = await next!;
      offset += piece.length;
      next = offset < size ? readPiece(offset) : undefined;
      next?.catch(() => {}); // awaited at the next turn, or settled below
      yield piece;
    }
    if ((await file.read(Buffer.alloc(1), 0, 1, size)).bytesRead !== 0) throw new Error(`${changePath} changed size while it was being archived`);
  } finally {
    await next?.catch(() => {});
    await file.close();
  }
}

/**
 * A piece of a changes archive: bytes, or the content of a regular file by
 * reference, for a consumer that reads it itself (the native applier).
 */
export type ArchivePiece = Buffer | FileBytes;

/**
 * The tar of `changes`, reading entries from `view`, piece after piece:
 * header blocks, a regular file's content as a reference, its padding.
 * Hardlinked files after the first become link entries; the end-of-archive
 * blocks close it.
 */
function* archivePieces(view: string, changes: readonly Change[]): Generator<ArchivePiece> {
  const linked = new Map<string, string>();
  for (const change of changes) {
    const name = change.path.replace(/^\/+/, '');
    if (change.kind === 'D') {
      const whiteout = join(dirname(name), `.wh.${basename(name)}`).replace(/^\.\//, '');
      yield* headerBlocks({ name: whiteout, mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, type: '0' });
      continue;
    }
    const path = join(view, name);
    const stat = lstatSync(path);
    const base = { mode: stat.mode, uid: stat.uid, gid: stat.gid, mtime: Math.floor(stat.mtimeMs / 1000), size: 0 };
    const pax = xattrsOf(path);
    const inode = `${stat.dev}:${stat.ino}`;
    if (stat.isFile() && stat.nlink > 1 && linked.has(inode)) {
      yield* headerBlocks({ ...base, name, type: '1', linkname: linked.get(inode)!, pax });
    } else if (stat.isFile()) {
      if (stat.nlink > 1) linked.set(inode, name);
      yield* headerBlocks({ ...base, name, type: '0', size: stat.size, pax });
      yield { path, size: stat.size };
      if (stat.size % BLOCK !== 0) yield padding(stat.size);
    } else if (stat.isDirectory()) {
      yield* headerBlocks({ ...base, name: `${name}/`, type: '5', pax });
    } else if (stat.isSymbolicLink()) {
      yield* headerBlocks({ ...base, name, type: '2', linkname: readlinkSync(path), pax });
    } else if (stat.isCharacterDevice() || stat.isBlockDevice()) {
      const type = stat.isCharacterDevice() ? '3' : '4';
      const devmajor = Number((BigInt(stat.rdev) >> 8n) & 0xfffn) | Number((BigInt(stat.rdev) >> 32n) & ~0xfffn);
      const devminor = Number(BigInt(stat.rdev) & 0xffn) | Number((BigInt(stat.rdev) >> 12n) & ~0xffn);
      yield* headerBlocks({ ...base, name, type, devmajor, devminor, pax });
    } else if (stat.isFIFO()) {
      yield* headerBlocks({ ...base, name, type: '6', pax });
    }
    // sockets are not archived, as tar does not
  }
  yield Buffer.alloc(BLOCK * 2);
}

/**
 * The tar of `changes` (see archivePieces) in batches of about CHUNK bytes,
 * a file's content counted by its size but left in its file: for the native
 * applier in index mode (a commit in place), which reads it itself.
 */
export function* changesArchivePieces(view: string, changes: readonly Change[]): Generator<ArchivePiece[]> {
  let batch: ArchivePiece[] = [];
  let size = 0;
  for (const piece of archivePieces(view, changes)) {
    batch.push(piece);
    size += Buffer.isBuffer(piece) ? piece.length : piece.size;
    if (size >= CHUNK) {
      yield batch;
      batch = [];
      size = 0;
    }
  }
  if (batch.length > 0) yield batch;
}

/**
 * Streams the tar of `changes` (see archivePieces) with the files' content
 * read in. Small files are read synchronously: this is CPU work fed to a
 * consumer on other threads, and small reads from the page cache cost less
 * than their async round trips. Large ones are read ahead on the thread pool.
 */
export async function* changesArchive(view: string, changes: readonly Change[]): AsyncGenerator<Buffer> {
  const out = new ChunkBuffer();
  for (const piece of archivePieces(view, changes)) {
    if (Buffer.isBuffer(piece)) {
      out.add(piece);
    } else {
      const shown = `/${relative(view, piece.path)}`; // the path in the container, for messages
      const content = piece.size >= CHUNK ? largeFileContent(piece.path, piece.size, shown) : fileContent(piece.path, piece.size, shown);
      for await (const chunk of content) {
        out.add(chunk);
        if (out.full) yield out.take();
      }
    }
    if (out.full) yield out.take();
  }
  if (!out.empty) yield out.take();
}
