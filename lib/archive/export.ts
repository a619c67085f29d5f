// Rebuilds a layer's tar byte-exact from its directory and tar-split, checking
// the sha256 against the DiffID while streaming.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { inflateRawSync } from 'node:zlib';

import { TarExporter } from '../native/archive.js';
import { ArchiveError } from './errors.js';

const READ_BYTES = 1 << 20;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * A stream of the layer's tar. It errors with ERR_LAYER_CONTENT_CHANGED,
 * naming the file, when the directory no longer holds what was applied.
 */
export function exportLayerArchive(dir: string, tarSplit: Buffer, expectedDiffId: string): Readable {
  if (!DIGEST.test(expectedDiffId)) {
    throw new TypeError(`expectedDiffId must look like sha256:<64 hex digits>, got ${expectedDiffId}`);
  }
  const hash = createHash('sha256');
  let exporter: TarExporter | undefined;
  let ahead: Promise<Buffer | null> | undefined;
  // The native read being consumed; with `ahead`, what close() must wait for.
  let reading: Promise<unknown> = Promise.resolve();
  return new Readable({
    highWaterMark: 2 * READ_BYTES,
    construct(callback) {
      try {
        let split: Buffer;
        try {
          split = inflateRawSync(tarSplit);
        } catch (error) {
          throw new ArchiveError('ERR_ARCHIVE_SPLIT_CORRUPT', 'tar-split data is not deflated', { cause: error });
        }
        exporter = new TarExporter(dir, split);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    read() {
      // One native read runs ahead while this chunk is hashed and consumed.
      const current = ahead ?? exporter!.read(READ_BYTES);
      ahead = undefined;
      reading = current;
      current.then(
        (chunk) => {
          if (chunk) {
            ahead = exporter!.read(READ_BYTES);
            ahead.catch(() => {}); // its error surfaces at the next read()
            hash.update(chunk);
            this.push(chunk);
            return;
          }
          const digest = `sha256:${hash.digest('hex')}`;
          if (digest !== expectedDiffId) {
            this.destroy(
              new ArchiveError(
                'ERR_LAYER_CONTENT_CHANGED',
                `rebuilt layer tar has digest ${digest}, expected ${expectedDiffId}: the layer directory or its tar-split changed`,
              ),
            );
            return;
          }
          this.push(null);
        },
        (error: unknown) => this.destroy(error as Error),
      );
    },
    // At the end, on error or when the reader gives up: release the fds once no read is under way.
    destroy(error, callback) {
      void Promise.allSettled([reading, ahead]).then(() => {
        exporter?.close();
        callback(error);
      });
    },
  });
}
