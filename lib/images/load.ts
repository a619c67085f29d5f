// strata load: images from a docker save archive or an OCI image layout.
// Everything that can be checked without reading layers (manifests, configs,
// layer counts, blob presence and sizes) is checked before the first layer
// is imported. Layers are imported as the image's own (not explicit); the
// load holds a reference on each until the image row takes over the top one,
// so a failure part-way releases them and leaves nothing new registered.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { transaction } from '../store/database.js';
import type { Digest } from '../store/digest.js';
import type { Image } from '../store/images.js';
import type { Layer } from '../store/layers.js';
import { beginStaging, discardStaged } from '../store/staging.js';
import type { Store } from '../store/store.js';
import { invalidImage } from './config.js';
import { readDockerArchive } from './docker-archive.js';
import { readOciLayout } from './oci-layout.js';
import { importLayers } from './load-layers.js';
import type { ImagePlan } from './plan.js';
import { TarIndex } from './tar-index.js';

export interface LoadEvents {
  /** The load turns to the next layer (possibly read in part already, see load-layers.ts), or found it present. */
  layer?(diffId: Digest, size: number, existed: boolean): void;
  /** Bytes of the current layer read so far. */
  progress?(diffId: Digest, bytesRead: number, size: number): void;
}

export interface LoadedImage {
  image: Image;
  tags: string[];
}

/**
 * Loads every image of the archive. `input` is a file (read in place when
 * it is a regular, uncompressed file) or a stream, which is first spooled
 * into <root>/tmp: the files an archive needs first come last in it.
 */
export async function loadImages(store: Store, input: string | Readable, events: LoadEvents = {}): Promise<LoadedImage[]> {
  const spoolDir = join(store.root, 'tmp');
  let spool: string | undefined;
  let file: FileHandle | undefined;
  try {
    if (typeof input === 'string') {
      file = await open(input, 'r');
      if (!(await file.stat()).isFile() || (await isGzip(file))) {
        const source = createReadStream('', { fd: file });
        file = undefined;
        input = source;
      }
    }
    if (!file) {
      mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
      spool = join(spoolDir, `load-${randomBytes(8).toString('hex')}`);
      beginStaging(store.db, spool);
      await spoolTo(input as Readable, spool);
      file = await open(spool, 'r');
    }
    const archive = await TarIndex.read(file);
    const plans = await readPlans(archive);
    const loaded: LoadedImage[] = [];
    for (const plan of plans) loaded.push(await loadImage(store, archive, plan, events));
    return loaded;
  } finally {
    await file?.close();
    if (spool) await discardStaged(store.db, spool);
  }
}

/** docker save archives since Docker 25 are OCI layouts too: their manifest.json is what docker reads, so it wins. */
async function readPlans(archive: TarIndex): Promise<ImagePlan[]> {
  if (archive.has('manifest.json')) return readDockerArchive(archive);
  if (archive.has('index.json')) return readOciLayout(archive);
  throw invalidImage('the archive has neither manifest.json nor index.json: it is not a docker save archive or an OCI image layout');
}

async function isGzip(file: FileHandle): Promise<boolean> {
  const head = Buffer.alloc(2);
  await file.read(head, 0, 2, 0);
  return head[0] === 0x1f && head[1] === 0x8b;
}

/** Copies the stream to a file, gunzipping a gzip-compressed archive as docker load accepts one. */
async function spoolTo(input: Readable, path: string): Promise<void> {
  const source = input[Symbol.asyncIterator]();
  const first = await source.next();
  const head = first.done ? Buffer.alloc(0) : Buffer.from(first.value as Buffer);
  async function* all(): AsyncGenerator<Buffer> {
    yield head;
    for (let next = await source.next(); !next.done; next = await source.next()) yield next.value as Buffer;
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  if (gzip) await pipeline(all(), createGunzip(), createWriteStream(path, { mode: 0o600 }));
  else await pipeline(all(), createWriteStream(path, { mode: 0o600 }));
}

async function loadImage(store: Store, archive: TarIndex, plan: ImagePlan, events: LoadEvents): Promise<LoadedImage> {
  // Holds on the image's layers until its row holds the top one (released by the next open if this process dies).
  const held: number[] = [];
  const release = (): Layer[] => held.flatMap((hold) => store.layers.releaseHoldInTransaction(hold));
  try {
    await importLayers(store, archive, plan, held, events);
    const { image, doomed } = transaction(store.db, () => {
      const added = store.images.addInTransaction(plan.configBytes, { tags: plan.tags, ...(plan.manifest && { manifest: plan.manifest }) });
      return { image: added.image, doomed: release() };
    });
    await store.layers.purge(doomed);
    return { image, tags: plan.tags };
  } catch (error) {
    const doomed = transaction(store.db, release);
    await store.layers.purge(doomed);
    throw error;
  }
}
