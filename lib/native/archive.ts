// Typed wrappers over the native tar applier and exporter (archive.cc). Errors
// come out as ArchiveError (code ERR_ARCHIVE_*, entry) with the caller's stack.
import { toArchiveError } from '../archive/errors.js';
import { native, withCallerStack } from './binding.js';
import type { NativeTarApplier, NativeTarExporter } from './types.js';

async function converted<T>(promise: Promise<T>): Promise<T> {
  try {
    return await withCallerStack(promise);
  } catch (error) {
    throw toArchiveError(error);
  }
}

function convertedSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw toArchiveError(error);
  }
}

export interface TarApplyStats {
  entries: number;
  /** Bytes of regular-file content (sparse files count their full size). */
  contentSize: number;
  /** Uncompressed tar-split records (format in native/core/tar_split.h). */
  tarSplit: Buffer;
}

/** Applies a tar stream, fed in order through write(), into `dir`. */
export class TarApplier {
  private readonly inner: NativeTarApplier;

  constructor(dir: string, whiteouts: 'overlay' | 'remove' | 'index') {
    this.inner = convertedSync(() => new native.TarApplier(dir, whiteouts));
  }

  /**
   * Parses and applies the next bytes (one Buffer, or several in order);
   * wait for it before the next call, and leave the Buffers unchanged until then.
   */
  write(chunk: Buffer | readonly Buffer[]): Promise<void> {
    return converted(this.inner.write(chunk));
  }

  /** Checks the end of the stream, sets directory times, syncfs(dir). */
  finish(): Promise<TarApplyStats> {
    return converted(this.inner.finish());
  }

  /** Releases its fds at once (not at garbage collection): the filesystem may be unmounted next. */
  close(): void {
    this.inner.close();
  }
}

/** Rebuilds a tar from a directory and its uncompressed tar-split. */
export class TarExporter {
  private readonly inner: NativeTarExporter;

  constructor(dir: string, tarSplit: Buffer) {
    this.inner = convertedSync(() => new native.TarExporter(dir, tarSplit));
  }

  /** The next at most `maxBytes` bytes of the tar, or null at its end. */
  read(maxBytes: number): Promise<Buffer | null> {
    return converted(this.inner.read(maxBytes));
  }

  /** Releases its fds at once; not while a read is under way. */
  close(): void {
    this.inner.close();
  }
}
