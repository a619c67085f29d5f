// Copying files cheaply: reflinks (FICLONE, FICLONERANGE) where the
// filesystem shares extents, else in-kernel copies, else read/write.
import { native, withCallerStack } from './binding.js';

/** 'auto' tries FICLONE, then copy_file_range, then read/write; 'reflink' only FICLONE; 'copy' only read/write. */
export type CloneMode = 'auto' | 'reflink' | 'copy';
export type CloneMethod = 'ficlone' | 'copy_file_range' | 'copy';

export interface CloneResult {
  /** How the data got there (copy_file_range may itself share extents). */
  method: CloneMethod;
  /** The file's length. */
  bytes: number;
}

/**
 * Copies the regular file `src` to the new file `dst` (EEXIST if it exists)
 * with the source's permission bits. Copies keep holes as holes. A failed
 * copy leaves no `dst` behind.
 */
export async function cloneFile(src: string, dst: string, options: { method?: CloneMode } = {}): Promise<CloneResult> {
  const result = await withCallerStack(native.cloneFile(src, dst, options.method ?? 'auto'));
  return { method: result.method as CloneMethod, bytes: result.bytes };
}

/**
 * FICLONERANGE: shares `length` bytes of `src` (a path, or an fd kept open
 * until this settles) at `srcOffset` into the existing file `dst` at
 * `dstOffset`. A length of 0 means to the end of `src`. Offsets and length
 * must be multiples of the block size (EINVAL otherwise), except a range that
 * ends at the end of `src`.
 */
export async function cloneRange(
  src: string | number,
  srcOffset: number,
  dst: string,
  dstOffset: number,
  length: number,
): Promise<void> {
  return withCallerStack(native.cloneRange(src, srcOffset, dst, dstOffset, length));
}

/** Whether `dir`'s filesystem supports FICLONE (tried on two temporary files). */
export async function probeReflink(dir: string): Promise<boolean> {
  return withCallerStack(native.probeReflink(dir));
}
