// Builds tar archives by hand, for the hostile and malformed inputs GNU tar
// will not write. Each entry is a 512-byte ustar header plus padded data.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

import { applyLayerArchive, type ApplyOptions, type ApplyResult } from '../../lib/archive/apply.js';
import { exportLayerArchive } from '../../lib/archive/export.js';

export interface TarEntry {
  name: string;
  /** '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, 'x' PAX, 'L' GNU long name... */
  type?: string;
  data?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** Overrides the size field (e.g. a lie about the data that follows). */
  size?: number;
  /** Raw bytes for the size field (e.g. base-256). */
  sizeField?: Buffer;
  /** Adds this to the computed checksum, to make it wrong. */
  checksumDelta?: number;
  /** PAX records written as an 'x' header before this entry. */
  pax?: Record<string, string | Buffer>;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

export function tarHeader(entry: TarEntry, dataSize: number): Buffer {
  const block = Buffer.alloc(512);
  block.write(entry.name, 0, 100, 'utf8');
  block.write(octal(entry.mode ?? (entry.type === '5' ? 0o755 : 0o644), 8), 100, 'ascii');
  block.write(octal(entry.uid ?? 0, 8), 108, 'ascii');
  block.write(octal(entry.gid ?? 0, 8), 116, 'ascii');
  if (entry.sizeField) entry.sizeField.copy(block, 124);
  else block.write(octal(entry.size ?? dataSize, 12), 124, 'ascii');
  block.write(octal(entry.mtime ?? 1_700_000_000, 12), 136, 'ascii');
  block.write(entry.type ?? '0', 156, 'latin1');
  block.write(entry.linkname ?? '', 157, 100, 'utf8');
  block.write('ustar\x0000', 257, 'latin1');
  block.write(octal(entry.devmajor ?? 0, 8), 329, 'ascii');
  block.write(octal(entry.devminor ?? 0, 8), 337, 'ascii');
  block.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum + (entry.checksumDelta ?? 0), 7), 148, 'ascii');
  return block;
}

function padded(data: Buffer): Buffer {
  const padding = (512 - (data.length % 512)) % 512;
  return Buffer.concat([data, Buffer.alloc(padding)]);
}

export function paxData(records: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length++;
    parts.push(Buffer.concat([Buffer.from(String(length)), body]));
  }
  return Buffer.concat(parts);
}

export interface BuildOptions {
  /** Number of zero blocks at the end (default 2). */
  endBlocks?: number;
  /** Bytes appended after the end blocks. */
  trailer?: Buffer;
}

export function buildTar(entries: TarEntry[], options: BuildOptions = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (entry.pax) {
      const data = paxData(entry.pax);
      parts.push(tarHeader({ name: 'PaxHeaders/x', type: 'x' }, data.length), padded(data));
    }
    const data = entry.data === undefined ? Buffer.alloc(0) : Buffer.from(entry.data);
    parts.push(tarHeader(entry, data.length), padded(data));
  }
  parts.push(Buffer.alloc(512 * (options.endBlocks ?? 2)));
  if (options.trailer) parts.push(options.trailer);
  return Buffer.concat(parts);
}

// ---- helpers shared by the archive tests ----

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Feeds `data` in chunks of `chunkSize` bytes. */
export async function* chunked(data: Buffer, chunkSize = 65536): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += chunkSize) yield data.subarray(at, at + chunkSize);
}

export function applyBuffer(data: Buffer, dir: string, options: Partial<ApplyOptions> = {}): Promise<ApplyResult> {
  return applyLayerArchive(chunked(data), dir, { whiteouts: 'overlay', ...options });
}

export async function exportBuffer(dir: string, tarSplit: Buffer, diffId: string, checkpoints?: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of exportLayerArchive(dir, tarSplit, diffId, checkpoints)) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** All xattrs below `dir` (symlinks not followed), path relative to dir -> name -> hex. */
export function xattrsBelow(dir: string): Record<string, Record<string, string>> {
  const out = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir], {
    encoding: 'utf8',
  });
  const result: Record<string, Record<string, string>> = {};
  let current = '';
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = line.slice(8).slice(dir.length).replace(/^\//, '') || '.';
      result[current] = {};
    } else if (line.includes('=')) {
      const eq = line.indexOf('=');
      result[current]![line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  return result;
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  size?: number;
  sha?: string;
  link?: string;
  rdev?: number;
  /** Index of the first path sharing this inode (hard links). */
  inodeOf?: string;
}

/** Every node below `dir`, with what a layer must preserve. */
export function snapshot(dir: string): Record<string, NodeInfo> {
  const result: Record<string, NodeInfo> = {};
  const inodes = new Map<bigint, string>();
  const visit = (rel: string) => {
    const full = rel === '.' ? dir : join(dir, rel);
    const st = lstatSync(full, { bigint: true });
    const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink'
      : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
    const info: NodeInfo = {
      type: kind,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs,
    };
    if (kind === 'file') {
      info.size = Number(st.size);
      info.sha = sha256(readFileSync(full));
      const first = inodes.get(st.ino);
      if (first) info.inodeOf = first;
      else inodes.set(st.ino, rel);
    }
    if (kind === 'symlink') info.link = readlinkSync(full);
    if (kind === 'char' || kind === 'block') info.rdev = Number(st.rdev);
    result[rel] = info;
    if (kind === 'dir') {
      for (const name of readdirSync(full).sort()) visit(rel === '.' ? name : `${rel}/${name}`);
    }
  };
  visit('.');
  return result;
}
