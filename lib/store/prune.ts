// Prune as docker's: remove what nothing uses (containers not mounted,
// images no container was made from, anonymous volumes no container uses,
// build cache no image uses),
// narrowed by filters, and report what went and the space that freed.
import { BuildCache, type PruneResult as BuildCachePruneResult } from '../build/cache.js';
import { isMountPoint } from '../system/mountinfo.js';
import { transaction } from './database.js';
import type { Digest } from './digest.js';
import { StoreError } from './errors.js';
import type { Layer } from './layers.js';
import type { Store } from './store.js';
import { labelMatches, type PruneResult as VolumePruneResult } from './volumes.js';

export interface PruneFilters {
  /** Only what was created before this time. */
  until?: Date;
  /** "key" or "key=value"; all must match. */
  label?: string[];
  /** "key" or "key=value"; none may match. */
  labelNot?: string[];
}

export interface ContainerPruneResult {
  deleted: string[];
  /** Bytes of the removed writable layers, and of any layer only they used. */
  spaceReclaimed: number;
}

export interface ImagePruneResult {
  /** As docker lists them: { untagged: tag } and { deleted: image or layer id }. */
  deleted: Array<{ untagged: string } | { deleted: Digest }>;
  /** Bytes of the layers removed with the images. */
  spaceReclaimed: number;
}

export interface SystemPruneResult {
  containers: ContainerPruneResult;
  images: ImagePruneResult;
  volumes?: VolumePruneResult;
  buildCache: BuildCachePruneResult;
  spaceReclaimed: number;
}

function matches(filters: PruneFilters, created: string, labels: Record<string, string>): boolean {
  if (filters.until && !(Date.parse(created) < filters.until.getTime())) return false;
  if (filters.label && !filters.label.every((label) => labelMatches(labels, label))) return false;
  if (filters.labelNot && filters.labelNot.some((label) => labelMatches(labels, label))) return false;
  return true;
}

const layerBytes = (layers: readonly Layer[]) => layers.reduce((sum, layer) => sum + layer.size, 0);

/** Removes containers that are not mounted (docker: stopped) and match the filters. */
export async function pruneContainers(store: Store, filters: PruneFilters = {}): Promise<ContainerPruneResult> {
  const result: ContainerPruneResult = { deleted: [], spaceReclaimed: 0 };
  for (const candidate of store.containers.list()) {
    if (!matches(filters, candidate.created, candidate.labels)) continue;
    // Looked at again just before: another process may have mounted it since the listing.
    const container = store.containers.get(candidate.id);
    if (!container || container.mounts > 0 || isMountPoint(store.containers.layout(container).merged)) continue;
    const size = await store.containers.writableSize(container);
    const doomed = await store.containers.remove(container.id);
    result.deleted.push(container.id);
    result.spaceReclaimed += size + layerBytes(doomed);
  }
  return result;
}

/**
 * Removes images no container was made from: the dangling (untagged) ones,
 * or with `all` every one, matching the filters (labels are the image
 * config's). Their tags go with them; so do the layers nothing else holds.
 */
export async function pruneImages(store: Store, options: { all?: boolean; filters?: PruneFilters } = {}): Promise<ImagePruneResult> {
  const filters = options.filters ?? {};
  const result: ImagePruneResult = { deleted: [], spaceReclaimed: 0 };
  for (const image of store.images.list(options.all ? {} : { dangling: true })) {
    const labels = (image.config.config?.Labels ?? {}) as Record<string, string>;
    if (!matches(filters, image.created, labels)) continue;
    const removed = transaction(store.db, () => {
      // In the transaction: a container made from it since the listing keeps it.
      if (!store.images.get(image.id) || store.images.containersOf(image.id).length > 0) return undefined;
      return store.images.removeInTransaction(image.id, { force: true });
    });
    if (!removed) continue;
    await store.layers.purge(removed.doomedLayers);
    result.deleted.push(
      ...removed.untagged.map((untagged) => ({ untagged })),
      ...removed.deleted.map((deleted) => ({ deleted })),
      ...removed.doomedLayers.map((layer) => ({ deleted: layer.chainId })),
    );
    result.spaceReclaimed += layerBytes(removed.doomedLayers);
  }
  return result;
}

/**
 * docker system prune, in docker's order: containers not mounted, with
 * `volumes` the unused anonymous volumes, then images (dangling, or with
 * `all` all unused). Volumes have no creation-time filter, as in docker.
 */
export async function pruneSystem(store: Store, options: { all?: boolean; volumes?: boolean; filters?: PruneFilters } = {}): Promise<SystemPruneResult> {
  const filters = options.filters ?? {};
  if (options.volumes && filters.until) throw new StoreError('ERR_INVALID_FILTER', 'the "until" filter is not supported with volumes');
  const containers = await pruneContainers(store, filters);
  const volumes = options.volumes
    ? await store.volumes.prune({ ...(filters.label && { label: filters.label }), ...(filters.labelNot && { labelNot: filters.labelNot }) })
    : undefined;
  const images = await pruneImages(store, { ...(options.all && { all: true }), filters });
  // As docker: the build cache no image uses (-a: all of it), last, once the images it served may be gone.
  const buildCache = await new BuildCache(store).prune({ ...(options.all && { all: true }), ...(filters.until && { before: filters.until }) });
  return {
    containers,
    images,
    ...(volumes && { volumes }),
    buildCache,
    spaceReclaimed: containers.spaceReclaimed + images.spaceReclaimed + (volumes?.spaceReclaimed ?? 0) + buildCache.reclaimed,
  };
}
