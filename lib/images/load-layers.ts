// The layers of one image being loaded, registered in order: each becomes
// visible only once its data is on disk and its parent is registered. With a
// driver that stacks layers (overlay2), a layer's directory does not need its
// parent's files, so the next layer begins while this one is still being
// applied: this one's wait for its writeback (the applier's syncfs) is then
// off the load's critical path. With the other drivers a layer starts from a
// copy of its parent, once that is registered: one layer at a time.
import { createHash } from 'node:crypto';

import { transaction } from '../store/database.js';
import { chainId as computeChainId, type Digest } from '../store/digest.js';
import type { StagedLayer } from '../store/layers.js';
import type { Store } from '../store/store.js';
import { invalidImage } from './config.js';
import type { LoadEvents } from './load.js';
import type { ImagePlan, LayerSource } from './plan.js';
import type { TarIndex } from './tar-index.js';

/**
 * How far into a layer's bytes the next one begins, with a stacking driver.
 * Two layers are then applied at once for a while, which keeps two cores
 * busy (the JS thread hashes one while the pool writes the other). On 2
 * cores a 5-layer, 400 MB load took 7% longer beginning at the end of the
 * bytes, and about as much longer beginning at once (all layers together).
 */
const NEXT_LAYER_AT = 0.5;

/** A layer the load found present (and holds), or one it is staging. */
type Begun = { hold: number } | { staging: Promise<StagedLayer> };

/**
 * Imports the image's layers as the image's own (not explicit), pushing a
 * hold on each onto `held` as it is found present or registered: the caller
 * releases them. On failure no layer is begun any more, and every one
 * staged and not registered is removed once its apply has settled.
 */
export async function importLayers(store: Store, archive: TarIndex, plan: ImagePlan, held: number[], events: LoadEvents): Promise<void> {
  const diffIds = plan.config.rootfs.diff_ids;
  const chainIds: Digest[] = [];
  for (const [i, diffId] of diffIds.entries()) chainIds.push(computeChainId(chainIds[i - 1] ?? null, diffId));
  const stacks = store.layers.stacksLayers;
  const begun: Array<Promise<Begun>> = [];
  // On failure: no layer is begun any more, and those under way stop.
  const failed = new AbortController();
  // Events are about one layer at a time, in order: another one's progress waits for its turn.
  let current = 0;

  // Never throws: called from another layer's progress too, its errors are the promise's.
  const begin = (i: number): void => {
    if (begun[i] || i >= plan.layers.length || failed.signal.aborted) return;
    const source = plan.layers[i]!;
    const next = () => stacks && begin(i + 1);
    begun[i] = (async (): Promise<Begun> => {
      const chainId = chainIds[i]!;
      const hold = transaction(store.db, () => (store.layers.get(chainId) ? store.layers.holdInTransaction(chainId) : undefined));
      if (hold !== undefined) {
        held.push(hold);
        queueMicrotask(next);
        return { hold };
      }
      const staging = stageLayer(store, archive, source, chainIds[i - 1] ?? null, diffIds[i]!, failed.signal, (bytes) => {
        if (i === current) events.progress?.(diffIds[i]!, bytes, source.member.size);
        if (bytes >= source.member.size * NEXT_LAYER_AT) next();
      });
      staging.then(next, () => {}); // an empty layer reports no bytes; a failed one is awaited in its turn, or on failure
      return { staging };
    })();
  };

  let registered = 0; // layers before this one are held: no longer the catch's to discard
  try {
    for (let i = 0; i < plan.layers.length; i++) {
      begin(i);
      current = i;
      const step = await begun[i]!;
      events.layer?.(diffIds[i]!, plan.layers[i]!.member.size, 'hold' in step);
      if ('staging' in step) {
        const { hold } = await store.layers.registerStaged(await step.staging, { explicit: false, hold: true });
        held.push(hold!);
      }
      registered = i + 1;
    }
  } catch (error) {
    failed.abort();
    for (let i = registered; i < begun.length; i++) {
      const step = await begun[i]!.catch(() => undefined);
      const staged = step && 'staging' in step ? await step.staging.catch(() => undefined) : undefined;
      if (staged) await store.layers.discardStagedLayer(staged);
    }
    throw error;
  }
}

/** Applies one layer into a staged directory, checking the blob's digest where the archive names it by a different one. */
async function stageLayer(
  store: Store,
  archive: TarIndex,
  source: LayerSource,
  parent: Digest | null,
  diffId: Digest,
  signal: AbortSignal,
  onProgress: (bytes: number) => void,
): Promise<StagedLayer> {
  // An uncompressed blob named by its DiffID is proven by the DiffID check: hash only the others.
  const hash = source.blobDigest && source.blobDigest !== diffId ? createHash('sha256') : undefined;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of archive.stream(source.member)) {
      hash!.update(chunk as Buffer);
      yield chunk as Buffer;
    }
  }
  const staged = await store.layers.stage(hash ? hashed() : archive.range(source.member), parent, { expectedDiffId: diffId, onProgress, signal });
  const blobDigest = hash && `sha256:${hash.digest('hex')}`;
  if (blobDigest && blobDigest !== source.blobDigest) {
    await store.layers.discardStagedLayer(staged);
    throw invalidImage(`layer blob ${source.path} has digest ${blobDigest}, not the one its name gives`);
  }
  return staged;
}
