// Writes a layer tar of a list of changes, in the form Docker's layer tars
// use: changed and added entries with their content read from a directory
// showing the merged tree, deletions as AUFS whiteouts (.wh.<name>).
import { createReadStream } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

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

/**
 * Streams the tar of `changes`, reading entries from `view`. Hardlinked files
 * after the first become link entries; the end-of-archive blocks close it.
 */
export async function* changesArchive(view: string, changes: readonly Change[]): AsyncGenerator<Buffer> {
  const linked = new Map<string, string>();
  for (const change of changes) {
    const name = change.path.replace(/^\/+/, '');
    if (change.kind === 'D') {
      const whiteout = join(dirname(name), `.wh.${basename(name)}`).replace(/^\.\//, '');
      yield* headerBlocks({ name: whiteout, mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, type: '0' });
      continue;
    }
    const path = join(view, name);
    const stat = await lstat(path, { bigint: false });
    const base = { mode: stat.mode, uid: stat.uid, gid: stat.gid, mtime: Math.floor(stat.mtimeMs / 1000), size: 0 };
    const pax = xattrsOf(path);
    const inode = `${stat.dev}:${stat.ino}`;
    if (stat.isFile() && stat.nlink > 1 && linked.has(inode)) {
      yield* headerBlocks({ ...base, name, type: '1', linkname: linked.get(inode)!, pax });
    } else if (stat.isFile()) {
      if (stat.nlink > 1) linked.set(inode, name);
      yield* headerBlocks({ ...base, name, type: '0', size: stat.size, pax });
      let written = 0;
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
        written += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      if (written !== stat.size) throw new Error(`${change.path} changed size while it was being archived`);
      yield padding(stat.size);
    } else if (stat.isDirectory()) {
      yield* headerBlocks({ ...base, name: `${name}/`, type: '5', pax });
    } else if (stat.isSymbolicLink()) {
      yield* headerBlocks({ ...base, name, type: '2', linkname: await readlink(path), pax });
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
