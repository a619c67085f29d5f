// strata import: a root filesystem (a tar, or a directory) as a one-layer
// image with a generated config, as `docker import` makes one.
import type { LayerInput } from '../archive/apply.js';
import { transaction } from '../store/database.js';
import type { Image } from '../store/images.js';
import type { Store } from '../store/store.js';
import { normalizeTag } from './reference.js';

export interface ImportRootfsOptions {
  /** name[:tag] to give the image. */
  tag?: string;
  /** Where it came from, for the history comment ("Imported from -"). */
  source: string;
  onProgress?: (bytesRead: number) => void;
}

export async function importRootfs(store: Store, input: LayerInput, options: ImportRootfsOptions): Promise<Image> {
  const tags = options.tag === undefined ? [] : [normalizeTag(options.tag)];
  // Held from its registration until the image row holds it, so neither a
  // failure nor a crash leaves an orphan layer, and no other process removes it.
  const { layer, hold } = await store.layers.import(input, { explicit: false, hold: true, ...(options.onProgress && { onProgress: options.onProgress }) });
  const release = () => store.layers.releaseHoldInTransaction(hold!);
  try {
    const created = new Date().toISOString();
    const config = {
      architecture: 'amd64',
      os: 'linux',
      created,
      comment: `Imported from ${options.source}`,
      config: {},
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      history: [{ created, comment: `Imported from ${options.source}` }],
    };
    const { image, doomed } = transaction(store.db, () => ({
      image: store.images.addInTransaction(Buffer.from(JSON.stringify(config)), { tags }).image,
      doomed: release(),
    }));
    await store.layers.purge(doomed);
    return image;
  } catch (error) {
    await store.layers.purge(transaction(store.db, release));
    throw error;
  }
}
