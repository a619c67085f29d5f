// What `strata run` starts from. For now an IMAGE argument names a layer (its
// ChainID or a unique prefix); images will be resolved here too.
import type { Digest } from '../store/digest.js';
import type { Store } from '../store/store.js';

/** The read-only layer a container for `reference` sits on. */
export function resolveRootLayer(store: Store, reference: string): Digest {
  return store.layers.resolve(reference).chainId;
}
