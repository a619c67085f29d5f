// Whole directory trees natively: copying one in parallel (the vfs driver's
// hot path), and listing one with every entry's lstat in one call (a build
// context).
import { native, withCallerStack } from './binding.js';
import type { NativeTreeCopyStats } from './types.js';

export type TreeCopyStats = NativeTreeCopyStats;

export interface TreeCopyOptions {
  /** Worker threads inside the one call (1 to 64); absent: min(4, hardware threads), or 1 for reflinks into btrfs (where more only contend for its tree locks). */
  threads?: number;
  /** false: read and write every byte, sharing no extent with `src` (default true: reflink where possible). */
  reflink?: boolean;
}

/**
 * Copies everything below the directory `src` into `dst`, which must not exist
 * or be an empty directory: file types, hard links, owners, modes, xattrs,
 * nanosecond timestamps and holes are kept, symlinks copied and never
 * followed. File data is reflinked where possible, decided per file. On
 * failure `dst` is left partly copied; remove it.
 */
export async function copyTree(src: string, dst: string, options: TreeCopyOptions = {}): Promise<TreeCopyStats> {
  const threads = options.threads ?? 0;
  if (options.threads !== undefined && (!Number.isInteger(threads) || threads < 1 || threads > 64)) {
    throw new RangeError(`threads must be an integer from 1 to 64, got ${String(options.threads)}`);
  }
  return withCallerStack(native.copyTree(src, dst, threads, options.reflink ?? true));
}

export interface ScannedEntry {
  /** Relative to the root, "/"-separated. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits (with setuid, setgid, sticky). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  /** The later of the modification and change times, in ms. */
  changedMs: number;
  /** dev:ino:size:mode:mtimeNs:ctimeNs, as from a bigint lstat: equal while the file is unchanged. */
  stamp: string;
}

const KINDS = ['other', 'file', 'directory', 'symlink'] as const;

/**
 * Every entry below the directory `root` (lstat: symlinks listed, not
 * followed), each directory before its contents, names in byte order.
 */
export async function scanTree(root: string): Promise<ScannedEntry[]> {
  const { paths, stamps, fields } = await withCallerStack(native.scanTree(root));
  if (fields.length === 0) return [];
  const names = paths.split('\0');
  const stampList = stamps.split('\0');
  const entries: ScannedEntry[] = [];
  for (let i = 0, f = 0; f < fields.length; i++, f += 7) {
    entries.push({
      path: names[i]!,
      type: KINDS[fields[f]!]!,
      mode: fields[f + 1]!,
      uid: fields[f + 2]!,
      gid: fields[f + 3]!,
      size: fields[f + 4]!,
      mtimeMs: fields[f + 5]!,
      changedMs: fields[f + 6]!,
      stamp: stampList[i]!,
    });
  }
  return entries;
}
