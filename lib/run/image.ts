// What a container starts from: an image (a tag, an id or a unique id prefix)
// or, failing that, a layer (a ChainID or a unique prefix).
import type { Digest } from '../store/digest.js';
import { StoreError } from '../store/errors.js';
import type { Image } from '../store/images.js';
import type { Store } from '../store/store.js';

export interface Root {
  /** The read-only layer the container sits on. */
  layer: Digest;
  /** The image it came from, when it was named by one. */
  image?: Image;
}

function imageNamed(store: Store, reference: string): Image | undefined {
  try {
    return store.images.resolve(reference);
  } catch (error) {
    const code = (error as StoreError).code;
    if (code === 'ERR_IMAGE_UNKNOWN' || code === 'ERR_INVALID_REFERENCE') return undefined;
    throw error;
  }
}

export function resolveRoot(store: Store, reference: string): Root {
  const image = imageNamed(store, reference);
  if (image) {
    if (!image.topLayer) throw new StoreError('ERR_IMAGE_INVALID', `image ${reference} has no layers to create a container on`);
    return { layer: image.topLayer, image };
  }
  try {
    return { layer: store.layers.resolve(reference).chainId };
  } catch (error) {
    if ((error as StoreError).code !== 'ERR_LAYER_UNKNOWN') throw error;
    throw new StoreError('ERR_IMAGE_UNKNOWN', `no such image or layer: ${reference}`);
  }
}
