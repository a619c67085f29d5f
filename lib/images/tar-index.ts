// An image archive (docker save, an OCI layout in a tar) read in place: one
// pass over the headers records where each file's data lies, then files are
// read by offset. docker save lists manifest.json last, so reading in stream
// order would need every layer kept until the end; a file on disk needs no
// copy at all, and a pipe is spooled to one (see load.ts).
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';

import type { FileRange } from '../archive/apply.js';
import { invalidImage } from './config.js';

export const BLOCK = 512;

export interface TarMember {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  /** Where the data starts in the archive. */
  offset: number;
  size: number;
  linkname: string;
}

/** A name as a clean relative path, or null when it would leave the archive. */
export function archivePath(name: string): string | null {
  if (name.startsWith('/') || name.includes('\0')) return null;
  const clean = posix.normalize(name).replace(/\/+$/, '');
  if (clean === '..' || clean.startsWith('../')) return null;
  return clean === '.' ? '' : clean.replace(/^\.\//, '');
}

export function field(block: Buffer, start: number, length: number): string {
  const raw = block.subarray(start, start + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
}

export function numeric(block: Buffer, start: number, length: number, what: string): number {
  const raw = block.subarray(start, start + length);
  if ((raw[0]! & 0x80) !== 0) {
    // base-256, as GNU tar writes sizes of 8 GiB and more
    let value = 0;
    for (let i = 1; i < length; i++) value = value * 256 + raw[i]!;
    return value;
  }
  const text = field(block, start, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw invalidImage(`archive header has an invalid ${what} "${text}"`);
  return parseInt(text, 8);
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  const recorded = field(block, 148, 8).trim();
  return /^[0-7]+$/.test(recorded) && parseInt(recorded, 8) === sum;
}

export function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = parseInt(data.subarray(at, space).toString(), 10);
    if (space < 0 || !(length > 0) || at + length > data.length) throw invalidImage('archive has a malformed PAX header');
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

/** Extension headers larger than this are refused: they hold names, not data. */
const MAX_EXTENSION = 1 << 20;

export class TarIndex {
  private constructor(
    private readonly file: FileHandle,
    private readonly members: Map<string, TarMember>,
  ) {}

  static async read(file: FileHandle): Promise<TarIndex> {
    const { size: fileSize } = await file.stat();
    const members = new Map<string, TarMember>();
    const block = Buffer.alloc(BLOCK);
    let offset = 0;
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax = new Map<string, string>();
    for (;;) {
      const { bytesRead } = await file.read(block, 0, BLOCK, offset);
      if (bytesRead === 0 && members.size > 0) break; // no end-of-archive blocks: tolerated, as tar does
      if (bytesRead < BLOCK) throw invalidImage('the archive is truncated (a header is cut short)');
      if (block.every((byte) => byte === 0)) break;
      if (!checksumOk(block)) throw invalidImage(`the archive is not a tar file or is corrupt (bad header checksum at byte ${offset})`);
      const type = String.fromCharCode(block[156]!);
      let size = numeric(block, 124, 12, 'size');
      if (pax.has('size')) size = Number(pax.get('size'));
      const dataOffset = offset + BLOCK;
      if (!Number.isSafeInteger(size) || size < 0 || dataOffset + size > fileSize) {
        throw invalidImage(`the archive is truncated (an entry needs ${size} bytes at byte ${dataOffset}, the file has ${fileSize})`);
      }
      offset = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
        if (size > MAX_EXTENSION) throw invalidImage(`the archive has a ${size}-byte extension header`);
        const data = Buffer.alloc(size);
        await file.read(data, 0, size, dataOffset);
        if (type === 'x') pax = paxRecords(data);
        else if (type === 'L') longName = field(data, 0, size);
        else if (type === 'K') longLink = field(data, 0, size);
        continue;
      }
      const prefix = field(block, 345, 155);
      const ustarName = prefix ? `${prefix}/${field(block, 0, 100)}` : field(block, 0, 100);
      const name = pax.get('path') ?? longName ?? ustarName;
      const linkname = pax.get('linkpath') ?? longLink ?? field(block, 157, 100);
      pax = new Map();
      longName = undefined;
      longLink = undefined;
      const path = archivePath(name);
      if (path === null || path === '') continue; // never looked up: names are checked where they are used
      const kind: TarMember['type'] =
        type === '0' || type === '\0' || type === '7' ? 'file' : type === '5' ? 'directory' : type === '2' ? 'symlink' : type === '1' ? 'hardlink' : 'other';
      members.set(path, { name: path, type: kind, offset: dataOffset, size, linkname });
    }
    return new TarIndex(file, members);
  }

  /** The regular file at `path`, following symlinks and hard links inside the archive. */
  lookup(path: string, what: string): TarMember {
    const clean = archivePath(path);
    if (clean === null) throw invalidImage(`${what} path "${path}" escapes the archive`);
    let member = this.members.get(clean);
    for (let hops = 0; member && member.type !== 'file'; hops++) {
      if (hops > 16 || (member.type !== 'symlink' && member.type !== 'hardlink')) break;
      const target = member.type === 'symlink' ? archivePath(posix.join(posix.dirname(member.name), member.linkname)) : archivePath(member.linkname);
      if (target === null) throw invalidImage(`${what} "${path}" links outside the archive`);
      member = this.members.get(target);
    }
    if (!member) throw invalidImage(`${what} "${path}" is missing from the archive`);
    if (member.type !== 'file') throw invalidImage(`${what} "${path}" is not a regular file in the archive`);
    return member;
  }

  has(path: string): boolean {
    const clean = archivePath(path);
    return clean !== null && this.members.get(clean)?.type === 'file';
  }

  /** The whole file, refused if it is larger than `limit`. */
  async readAll(member: TarMember, limit: number, what: string): Promise<Buffer> {
    if (member.size > limit) throw invalidImage(`${what} is ${member.size} bytes, more than the ${limit} allowed`);
    const data = Buffer.alloc(member.size);
    await this.file.read(data, 0, member.size, member.offset);
    return data;
  }

  /** The member's bytes in place, for reading without a stream. */
  range(member: TarMember): FileRange {
    return { file: this.file, start: member.offset, length: member.size };
  }

  stream(member: TarMember): Readable {
    if (member.size === 0) return createReadStream('/dev/null');
    return createReadStream('', { fd: this.file, start: member.offset, end: member.offset + member.size - 1, autoClose: false, highWaterMark: 1 << 20 });
  }
}
