// Rebuilds a layer's tar byte-exact from its directory and tar-split, checking
// the sha256 against the DiffID while streaming. The tar is read in segments
// that end where the import recorded SHA-256 checkpoints, several at once on
// the libuv pool, each hashed as it is read from the checkpoint before it and
// checked against the checkpoint after it, the last against the DiffID:
// together, exactly the check that the whole tar hashes to the DiffID. A
// layer without checkpoints has its segments hashed one after another.
import { Readable } from 'node:stream';
import { inflateRawSync } from 'node:zlib';

import { TarExporter } from '../native/archive.js';
import { hashSegment, parseCheckpoints } from '../native/digest.js';
import { ArchiveError } from './errors.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Segment length for layers without checkpoints. */
const DEFAULT_SEGMENT = 4 << 20;
/** Segments under way or waiting to be handed on: two being read while the reader takes one. */
const SEGMENTS_AHEAD = 3;

class LayerTarStream extends Readable {
  private exporter: TarExporter | undefined;
  private segments = 0;
  private started = 0; // segments started
  /** The segments started and not yet handed on, in order: each resolves to its bytes once checked. */
  private readonly ready: Array<Promise<Buffer>> = [];
  /** End state of the last segment started, for a next one without a recorded checkpoint. */
  private lastEnd: Promise<Buffer | null> = Promise.resolve(null);
  /** Native calls under way: the exporter is closed once they settle. */
  private readonly running = new Set<Promise<unknown>>();
  private wanted = false; // the reader asked for more than was pushed
  private delivering = false;

  constructor(
    private readonly dir: string,
    private readonly tarSplit: Buffer,
    private readonly diffId: string,
    private readonly interval: number,
    private readonly states: readonly Buffer[],
  ) {
    super({ highWaterMark: interval });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    try {
      let split: Buffer;
      try {
        split = inflateRawSync(this.tarSplit);
      } catch (error) {
        throw new ArchiveError('ERR_ARCHIVE_SPLIT_CORRUPT', 'tar-split data is not deflated', { cause: error });
      }
      this.exporter = new TarExporter(this.dir, split);
      this.segments = Math.max(1, Math.ceil(this.exporter.size / this.interval));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _read(): void {
    this.wanted = true;
    this.startSegments();
    void this.deliver();
  }

  // At the end, on error or when the reader gives up: release the fds once no
  // native call is under way (a segment's check may start one meanwhile).
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    void (async () => {
      while (this.running.size > 0) await Promise.allSettled([...this.running]);
      this.exporter?.close();
    })().then(
      () => callback(error),
      (closeError: unknown) => callback(error ?? (closeError as Error)),
    );
  }

  private startSegments(): void {
    while (!this.destroyed && this.started < this.segments && this.ready.length < SEGMENTS_AHEAD) {
      this.ready.push(this.segment(this.started++));
    }
  }

  private track<T>(call: Promise<T>): Promise<T> {
    this.running.add(call);
    const settled = () => this.running.delete(call);
    call.then(settled, settled);
    return call;
  }

  /** Reads and hashes segment `index`, from its recorded start state if there is one. */
  private segment(index: number): Promise<Buffer> {
    const exporter = this.exporter!;
    const offset = index * this.interval;
    const length = Math.min(this.interval, exporter.size - offset);
    const last = index === this.segments - 1;
    const recorded = index === 0 ? null : this.states[index - 1];
    let result: Promise<{ bytes: Buffer; hash: Buffer }>;
    if (recorded !== undefined) {
      result = this.track(exporter.readHashed(offset, length, recorded, last));
    } else {
      const before = this.lastEnd;
      const reading = this.track(exporter.read(offset, length));
      result = Promise.all([reading, before]).then(async ([bytes, state]) => ({ bytes, hash: await hashSegment(bytes, state, offset, last) }));
    }
    this.lastEnd = result.then((r) => r.hash);
    this.lastEnd.catch(() => {}); // the segment's own promise reports it
    const checked = result.then(async ({ bytes, hash }) => {
      const expected = last ? undefined : this.states[index];
      const matches = last ? `sha256:${hash.toString('hex')}` === this.diffId : !expected || hash.equals(expected);
      if (matches) return bytes;
      // Name the file if a checksum can: one in this segment, or before it when the hash did not start from a checkpoint.
      const suspects = recorded !== undefined ? offset : 0;
      if (!this.destroyed) await this.track(exporter.checkRange(suspects, offset + length - suspects));
      throw new ArchiveError(
        'ERR_LAYER_CONTENT_CHANGED',
        last
          ? `rebuilt layer tar has digest sha256:${hash.toString('hex')}, expected ${this.diffId}: the layer directory or its tar-split changed`
          : `rebuilt layer tar differs from the imported tar between bytes ${offset} and ${offset + length}: the layer directory or its tar-split changed`,
      );
    });
    checked.catch(() => {}); // awaited in order by deliver()
    return checked;
  }

  /** Hands on checked segments in order while the reader wants more. */
  private async deliver(): Promise<void> {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.wanted && this.ready.length > 0 && !this.destroyed) {
        const bytes = await this.ready[0]!;
        if (this.destroyed) return;
        this.ready.shift();
        this.startSegments();
        if (bytes.length > 0) this.wanted = this.push(bytes);
        if (this.ready.length === 0 && this.started === this.segments) {
          this.push(null);
          return;
        }
      }
    } catch (error) {
      this.destroy(error as Error);
    } finally {
      this.delivering = false;
    }
  }
}

/**
 * A stream of the layer's tar. It errors with ERR_LAYER_CONTENT_CHANGED,
 * naming the file, when the directory no longer holds what was applied.
 * `checkpoints` are the SHA-256 checkpoints recorded at import, if any.
 */
export function exportLayerArchive(dir: string, tarSplit: Buffer, expectedDiffId: string, checkpoints?: Buffer | null): Readable {
  if (!DIGEST.test(expectedDiffId)) {
    throw new TypeError(`expectedDiffId must look like sha256:<64 hex digits>, got ${expectedDiffId}`);
  }
  const { interval, states } = parseCheckpoints(checkpoints, DEFAULT_SEGMENT);
  return new LayerTarStream(dir, tarSplit, expectedDiffId, interval, states);
}
