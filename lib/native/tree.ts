// Copying a whole directory tree natively, in parallel (the vfs driver's hot path).
import { native, withCallerStack } from './binding.js';
import type { NativeTreeCopyStats } from './types.js';

export type TreeCopyStats = NativeTreeCopyStats;

export interface TreeCopyOptions {
  /** Worker threads inside the one call (1 to 64); absent: min(4, hardware threads). */
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
