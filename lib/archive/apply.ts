// Applies a layer tar stream (plain, gzip or zstd) into a directory: JS reads,
// decompresses and hashes; the native applier parses and writes on a pool
// thread, one batch in flight while the next is read and hashed. In 'index'
// mode, which writes nothing, the applier hashes too: its thread is the idle
// one there, while the JS thread writes the archive (a commit). A tar made on
// the spot (ArchivePieces, a commit) leaves the files' content for the
// applier to read and hash itself. An uncompressed tar in a file is read in
// place into reused buffers, with the next read under way while one chunk is
// hashed and the one before applied.
import type { FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip, deflateRaw, constants as zlibConstants } from 'node:zlib';

import { Decompress } from 'fzstd';

import { TarApplier, type FileBytes } from '../native/archive.js';
import { DigestChain } from '../native/digest.js';
import { ArchiveError } from './errors.js';

/**
 * How whiteouts become the driver's form: overlay character devices, removal
 * (for drivers whose layer directory starts as a copy of its parent), or
 * 'index': the directory already holds the content and nothing is written,
 * only the DiffID and tar-split are taken (a container's changes adopted as a
 * layer in place).
 */
export type WhiteoutMode = 'overlay' | 'remove' | 'index';

export interface ApplyOptions {
  /**
   * overlay: `.wh.x` becomes a 0/0 char device `x`, `.wh..wh..opq` sets
   * trusted.overlay.opaque=y on its directory. remove: `x` is deleted, and an
   * opaque directory loses what this layer did not add (`dir` holds a copy of
   * the parent layer).
   */
  whiteouts: WhiteoutMode;
  /** 'sha256:<hex>' of the uncompressed tar; a mismatch rejects. */
  expectedDiffId?: string;
  onProgress?: (compressedBytesRead: number) => void;
  signal?: AbortSignal;
}

export interface ApplyResult {
  /** 'sha256:<hex>' of the uncompressed tar stream. */
  diffId: string;
  tarSize: number;
  contentSize: number;
  entries: number;
  compression: 'none' | 'gzip' | 'zstd';
  /** Raw-deflated tar-split: with the directory, rebuilds the tar byte-exact. */
  tarSplit: Buffer;
  /** SHA-256 checkpoints of the tar (lib/native/digest.ts), for a parallel verified export. */
  checkpoints: Buffer;
}

/**
 * A layer tar that is `length` bytes of an open file from `start` (a file of
 * its own, or a member of a docker-archive). The caller keeps the handle open
 * until the apply settles, and closes it.
 */
export interface FileRange {
  file: FileHandle;
  start: number;
  length: number;
}

/**
 * An uncompressed layer tar made on the spot (a commit), in batches of
 * pieces: bytes, or a file's content that the applier reads and hashes
 * itself, so that the content never passes through JS.
 */
export interface ArchivePieces {
  pieces: Iterable<readonly (Buffer | FileBytes)[]>;
}

export type LayerInput = NodeJS.ReadableStream | AsyncIterable<Uint8Array> | FileRange | ArchivePieces;

const BATCH_BYTES = 1 << 20;
/** Reads of a file range: large enough that handing chunks between threads costs little. */
const FILE_READ_BYTES = 4 << 20;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function detectCompression(head: Buffer): ApplyResult['compression'] {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

function zstdError(error: unknown): ArchiveError {
  const why = error instanceof Error ? error.message : String(error);
  return new ArchiveError('ERR_ARCHIVE_CORRUPT', `bad zstd data: ${why}`, { cause: error });
}

/** fzstd's streaming decoder as a Transform. */
function createZstdDecompressor(): Transform {
  let decoder: Decompress | undefined;
  return new Transform({
    transform(this: Transform, chunk: Buffer, _encoding: string, callback: TransformCallback) {
      decoder ??= new Decompress((data) => this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
      try {
        decoder.push(chunk);
        callback();
      } catch (error) {
        callback(zstdError(error));
      }
    },
    flush(this: Transform, callback: TransformCallback) {
      try {
        decoder?.push(new Uint8Array(0), true);
        callback();
      } catch (error) {
        callback(zstdError(error));
      }
    },
  });
}

function isArchivePieces(input: LayerInput): input is ArchivePieces {
  return typeof (input as ArchivePieces).pieces?.[Symbol.iterator] === 'function';
}

function isFileRange(input: LayerInput): input is FileRange {
  return typeof (input as FileRange).file?.read === 'function' && typeof (input as FileRange).start === 'number';
}

export async function applyLayerArchive(input: LayerInput, dir: string, options: ApplyOptions): Promise<ApplyResult> {
  if (isArchivePieces(input)) {
    checkOptions(options);
    return await withApplier(dir, options, (applier) => applyPieces(applier, input.pieces, options), { hash: true });
  }
  if (isFileRange(input)) {
    checkOptions(options);
    return await withApplier(dir, options, (applier) => applyFileRange(applier, input, options));
  }
  let source: AsyncIterator<Uint8Array> | undefined;
  try {
    checkOptions(options);
    source = (input as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const from = source;
    return await withApplier(dir, options, (applier) => applyStream(applier, from, options));
  } catch (error) {
    // Closes the input (a file stream's fd) even if reading never started;
    // its own late errors no longer matter once this one is reported.
    const stream = input as { destroy?: () => void; on?: (event: string, fn: () => void) => void };
    stream.on?.('error', () => {});
    stream.destroy?.();
    throw error;
  } finally {
    await source?.return?.();
  }
}

function checkOptions(options: ApplyOptions): void {
  if (options.expectedDiffId !== undefined && !DIGEST.test(options.expectedDiffId)) {
    throw new TypeError(`expectedDiffId must look like sha256:<64 hex digits>, got ${options.expectedDiffId}`);
  }
  options.signal?.throwIfAborted();
}

async function withApplier(
  dir: string,
  options: ApplyOptions,
  apply: (applier: TarApplier) => Promise<ApplyResult>,
  applierOptions: { hash?: boolean } = {},
): Promise<ApplyResult> {
  const applier = new TarApplier(dir, options.whiteouts, applierOptions);
  try {
    return await apply(applier);
  } finally {
    await applier.close();
  }
}

/** Reads exactly `into.length` bytes at `position`, or fewer only at the end of the file. */
async function readAt(file: FileHandle, into: Buffer, position: number): Promise<Buffer> {
  let filled = 0;
  while (filled < into.length) {
    const { bytesRead } = await file.read(into, filled, into.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return into.subarray(0, filled);
}

/**
 * An uncompressed range is read into three reused buffers: while one chunk
 * is hashed, the next is being read and the one before applied. A compressed
 * or empty one goes through the stream path.
 */
async function applyFileRange(applier: TarApplier, range: FileRange, options: ApplyOptions): Promise<ApplyResult> {
  const head = await readAt(range.file, Buffer.alloc(Math.min(4, range.length)), range.start);
  if (range.length === 0 || detectCompression(head) !== 'none') {
    const stream: AsyncIterable<Uint8Array> = range.length === 0
      ? (async function* () {})()
      : range.file.createReadStream({ start: range.start, end: range.start + range.length - 1, autoClose: false, highWaterMark: 1 << 20 });
    const source = stream[Symbol.asyncIterator]();
    try {
      return await applyStream(applier, source, options);
    } finally {
      await source.return?.();
    }
  }

  const end = range.start + range.length;
  const buffers = [0, 1, 2].map(() => Buffer.allocUnsafeSlow(Math.min(FILE_READ_BYTES, range.length)));
  let position = range.start;
  const readNext = (index: number): Promise<Buffer> => {
    const into = buffers[index % buffers.length]!;
    const reading = readAt(range.file, into.subarray(0, Math.min(into.length, end - position)), position).then((chunk) => {
      position += chunk.length;
      return chunk;
    });
    reading.catch(() => {}); // awaited in the loop or when it stops
    return reading;
  };
  const hash = new DigestChain();
  let pending: Promise<void> | undefined;
  let reading: Promise<Buffer> | undefined = readNext(0);
  try {
    for (let index = 0; reading; index++) {
      const chunk = await reading;
      reading = undefined;
      if (chunk.length === 0) break; // the file is shorter than the range
      options.signal?.throwIfAborted();
      // Buffer index+1 holds neither this chunk nor the one being applied.
      if (position < end) reading = readNext(index + 1);
      hash.update(chunk);
      options.onProgress?.(position - range.start);
      if (pending) await pending;
      pending = applier.write(chunk);
      pending.catch(() => {}); // awaited by the next chunk or below
    }
    await pending;
  } finally {
    // Settles what is under way before the buffers and the handle go back to the caller.
    await Promise.allSettled([reading, pending]);
  }
  if (position < end) {
    throw new ArchiveError('ERR_ARCHIVE_TRUNCATED', `the file ends ${end - position} bytes before the end of the layer`);
  }
  return complete(applier, hash, range.length, 'none', options);
}

/** Pieces are applied a batch at a time, the next one made meanwhile; the applier hashes. */
async function applyPieces(applier: TarApplier, batches: ArchivePieces['pieces'], options: ApplyOptions): Promise<ApplyResult> {
  let tarSize = 0;
  let pending: Promise<void> | undefined;
  try {
    for (const batch of batches) {
      options.signal?.throwIfAborted();
      for (const piece of batch) tarSize += Buffer.isBuffer(piece) ? piece.length : piece.size;
      if (pending) await pending;
      options.onProgress?.(tarSize);
      pending = applier.write(batch);
      pending.catch(() => {}); // awaited by the next batch or below
    }
    await pending;
  } catch (error) {
    await pending?.catch(() => {});
    throw error;
  }
  return complete(applier, undefined, tarSize, 'none', options);
}

async function applyStream(applier: TarApplier, source: AsyncIterator<Uint8Array>, options: ApplyOptions): Promise<ApplyResult> {
  // Reads until the first 4 bytes are known, to pick the decompressor.
  let compressedRead = 0;
  const head: Buffer[] = [];
  let headSize = 0;
  let ended = false;
  while (headSize < 4) {
    const next = await source.next();
    if (next.done) {
      ended = true;
      break;
    }
    const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    head.push(chunk);
    headSize += chunk.length;
  }
  const compression = detectCompression(Buffer.concat(head));
  async function* compressed(): AsyncGenerator<Buffer> {
    const report = (chunk: Buffer) => {
      compressedRead += chunk.length;
      options.onProgress?.(compressedRead);
    };
    for (const chunk of head) {
      report(chunk);
      yield chunk;
    }
    if (ended) return;
    for (let next = await source.next(); !next.done; next = await source.next()) {
      const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      report(chunk);
      yield chunk;
    }
  }

  const hash = options.whiteouts === 'index' ? undefined : new DigestChain();
  let tarSize = 0;
  let pending: Promise<void> | undefined;
  let batch: Buffer[] = [];
  let batchSize = 0;
  // Waits for the previous write, then starts this one without waiting for it.
  const send = async () => {
    const chunks = batch;
    batch = [];
    batchSize = 0;
    if (pending) await pending;
    pending = applier.write(chunks);
    pending.catch(() => {}); // awaited by the next send or at the end
  };
  const sink = async (tar: AsyncIterable<Buffer>) => {
    for await (const chunk of tar) {
      hash?.update(chunk);
      tarSize += chunk.length;
      batch.push(chunk);
      batchSize += chunk.length;
      if (batchSize >= BATCH_BYTES) await send();
    }
    if (batchSize > 0) await send();
    if (pending) await pending;
  };

  const signalOption = options.signal ? { signal: options.signal } : {};
  try {
    if (compression === 'gzip') await pipeline(compressed(), createGunzip({ chunkSize: 1 << 20 }), sink, signalOption);
    else if (compression === 'zstd') await pipeline(compressed(), createZstdDecompressor(), sink, signalOption);
    else await pipeline(compressed(), sink, signalOption);
  } catch (error) {
    if (pending) await pending.catch(() => {});
    if (error instanceof Error && /^Z_/.test(String((error as { code?: unknown }).code))) {
      throw new ArchiveError('ERR_ARCHIVE_CORRUPT', `bad gzip data: ${error.message}`, { cause: error });
    }
    throw error;
  }

  return complete(applier, hash, tarSize, compression, options);
}

/**
 * Checks the DiffID, and has the applier check the end and make the data
 * durable: a DiffID hashed here is checked first, one the applier hashed
 * ('index' mode, nothing written, or pieces) once it is done.
 */
async function complete(
  applier: TarApplier,
  hash: DigestChain | undefined,
  tarSize: number,
  compression: ApplyResult['compression'],
  options: ApplyOptions,
): Promise<ApplyResult> {
  const check = (diffId: string) => {
    if (options.expectedDiffId !== undefined && diffId !== options.expectedDiffId) {
      throw new ArchiveError('ERR_ARCHIVE_DIGEST_MISMATCH', `layer tar has digest ${diffId}, expected ${options.expectedDiffId}`);
    }
    return diffId;
  };
  const hashed = hash?.finish();
  if (hashed) check(hashed.digest);
  const stats = await applier.finish();
  const diffId = hashed?.digest ?? check(stats.diffId!);
  const checkpoints = hashed?.checkpoints ?? stats.checkpoints!;
  // Promisified here, not at load: the CLI loads zlib only when a command uses it.
  const tarSplit = await promisify(deflateRaw)(stats.tarSplit, { level: zlibConstants.Z_BEST_SPEED });
  return { diffId, tarSize, contentSize: stats.contentSize, entries: stats.entries, compression, tarSplit, checkpoints };
}
