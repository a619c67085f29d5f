// Typed wrappers over the native tar applier and exporter (archive.cc). Errors
// come out as ArchiveError (code ERR_ARCHIVE_*, entry) with the caller's stack.
import { ArchiveError, toArchiveError } from '../archive/errors.js';
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
  /** 'sha256:<hex>' of the stream, when the applier hashes it itself ('index' mode, or asked to). */
  diffId?: string;
  /** With diffId: its SHA-256 checkpoints (lib/native/digest.ts). */
  checkpoints?: Buffer;
}

/**
 * Bytes of the stream that are the content of a file, `size` bytes long: the
 * applier reads them itself, so that they never pass through JS. A file
 * whose size is no longer `size` fails the write (ERR_ARCHIVE_SOURCE_CHANGED).
 */
export interface FileBytes {
  path: string;
  size: number;
}

/** Applies a tar stream, fed in order through write(), into `dir`. */
export class TarApplier {
  private readonly inner: NativeTarApplier;
  /** The native call under way; close() waits for it. */
  private running: Promise<unknown> | undefined;
  private closed = false;

  /**
   * The applier hashes the stream itself in 'index' mode, or with `hash`: a
   * caller that hands over files' content unread (FileBytes) cannot.
   */
  constructor(dir: string, whiteouts: 'overlay' | 'remove' | 'index', options: { hash?: boolean } = {}) {
    this.inner = convertedSync(() => new native.TarApplier(dir, whiteouts, options.hash ?? false));
  }

  private call<T>(start: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ArchiveError('ERR_ARCHIVE_STATE', 'the applier is closed'));
    const promise = converted(start());
    this.running = promise;
    return promise;
  }

  /** Parses and applies the next bytes; wait for it before the next call. */
  write(chunk: Buffer | readonly (Buffer | FileBytes)[]): Promise<void> {
    return this.call(() => this.inner.write(chunk));
  }

  /** Checks the end of the stream, sets directory times, syncfs(dir). */
  finish(): Promise<TarApplyStats> {
    return this.call(() => this.inner.finish());
  }

  /**
   * Releases its fds at once (not at garbage collection): the filesystem may
   * be unmounted next. A call still under way (a write a failed stream had
   * already started) is waited for; none starts afterwards.
   */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running) {
      const running = this.running;
      await running.catch(() => {});
      if (this.running === running) this.running = undefined;
    }
    this.inner.close();
  }
}

/**
 * Rebuilds a tar from a directory and its uncompressed tar-split, any range
 * of it on its own: several ranges may be read at once.
 */
export class TarExporter {
  private readonly inner: NativeTarExporter;
  /** Bytes of the whole tar. */
  readonly size: number;

  constructor(dir: string, tarSplit: Buffer) {
    this.inner = convertedSync(() => new native.TarExporter(dir, tarSplit));
    this.size = this.inner.size();
  }

  /** Bytes [offset, offset + length) of the tar. */
  read(offset: number, length: number): Promise<Buffer> {
    return converted(this.inner.readRange(offset, length)).then((r) => r.bytes);
  }

  /**
   * The same bytes, SHA-256-hashed as they are read, continuing from `state`
   * (null at the tar's start; see lib/native/digest.ts): the end state, or
   * with `final` the digest.
   */
  readHashed(offset: number, length: number, state: Buffer | null, final: boolean): Promise<{ bytes: Buffer; hash: Buffer }> {
    return converted(this.inner.readRange(offset, length, state, final)) as Promise<{ bytes: Buffer; hash: Buffer }>;
  }

  /** Rejects with ERR_LAYER_CONTENT_CHANGED naming a file in the range whose content changed. */
  checkRange(offset: number, length: number): Promise<void> {
    return converted(this.inner.checkRange(offset, length));
  }

  /** Releases its fds at once; not while a read is under way. */
  close(): void {
    this.inner.close();
  }
}
