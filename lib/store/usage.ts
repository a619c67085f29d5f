// Disk usage as `docker system df` computes it (images, containers, local
// volumes, build cache), read from what the store keeps up to date: layer
// sizes recorded at import, container sizes recorded at create, unmount and
// commit. One query per table; only mounted containers and volumes are walked.
import { BuildCache } from '../build/cache.js';
import type { Digest } from './digest.js';
import type { Store } from './store.js';

export interface ImageUsage {
  id: Digest;
  tags: string[];
  created: string;
  /** Bytes of its layers (docker's Size). */
  size: number;
  /** Bytes of its layers that another image uses too (docker's SharedSize). */
  sharedSize: number;
  /** size - sharedSize: what removing only this image would free. */
  uniqueSize: number;
  /** Containers made from it. */
  containers: number;
}

export interface ContainerUsage {
  id: string;
  name: string | null;
  /** The image it was made from; null for one made on a bare layer (or whose image was force-removed). */
  image: Digest | null;
  layer: Digest;
  created: string;
  /** How many callers have it mounted; a mounted container is active. */
  mounts: number;
  /** Bytes of its writable layer (docker's SizeRw). */
  sizeRw: number;
  /** sizeRw plus its layers (docker's SizeRootFs, the virtual size). */
  sizeRootFs: number;
  /** Volumes its mounts use. */
  volumes: string[];
}

export interface VolumeUsage {
  name: string;
  /** Containers that use it (docker's RefCount, LINKS). */
  links: number;
  /** Bytes of its data (docker's directory.Size); -1 when it could not be read. */
  size: number;
  created: string;
}

/** A build cache record (a build step), as docker prints BuildKit's. */
export interface BuildCacheRecord {
  /** The config id of the state the step made. */
  id: string;
  type: string;
  /** The step's instruction. */
  description: string;
  /** The bytes of the layer the step made; 0 for a metadata step, which adds none. */
  size: number;
  created: string;
  lastUsed: string | null;
  /** An image or container uses the step's layer. */
  inUse: boolean;
  /** The layer is in use outside the cache too, so pruning the cache would not free it. */
  shared: boolean;
}

export interface UsageCategory<T> {
  totalCount: number;
  activeCount: number;
  totalSize: number;
  /** What removing the unused items would free (docker's HEAD daemon formulas). */
  reclaimable: number;
  items: T[];
}

export interface DiskUsage {
  images: UsageCategory<ImageUsage>;
  containers: UsageCategory<ContainerUsage>;
  /** Local volumes without driver options: docker sizes only those. */
  volumes: UsageCategory<VolumeUsage>;
  buildCache: UsageCategory<BuildCacheRecord>;
}

/**
 * What the store's images, containers, volumes and build cache take on disk.
 * Containers not mounted report their recorded size; mounted ones (few, and
 * the only ones whose size can be changing) and ones never measured are
 * measured now. Volumes are walked on every call, as docker does: their data
 * can change with no container mounted.
 */
export async function diskUsage(store: Store): Promise<DiskUsage> {
  const chainSizes = store.layers.chainSizes();
  const [images, imageOfContainer] = imageUsage(store, chainSizes);
  return {
    images,
    containers: await containerUsage(store, chainSizes, imageOfContainer),
    volumes: volumeUsage(store),
    buildCache: buildCacheUsage(new BuildCache(store).records()),
  };
}

function imageUsage(store: Store, chainSizes: ReadonlyMap<Digest, number>): [UsageCategory<ImageUsage>, Map<string, Digest>] {
  const { db } = store;
  const layers = new Map(db.prepare('SELECT chain_id, parent, content_size FROM layers').raw().all().map((row) => {
    const [chainId, parent, size] = row as [Digest, Digest | null, number];
    return [chainId, { parent, size }];
  }));
  const rows = db.prepare('SELECT id, top_layer, created FROM images ORDER BY created DESC, id').raw().all() as Array<[Digest, Digest | null, string]>;
  const tags = new Map<Digest, string[]>();
  for (const [image, name] of db.prepare('SELECT image, name FROM image_tags ORDER BY name').raw().all() as Array<[Digest, string]>) {
    tags.set(image, [...(tags.get(image) ?? []), name]);
  }
  const imageOfContainer = new Map(db.prepare('SELECT container, image FROM container_images').raw().all() as Array<[string, Digest]>);
  const containersOf = new Map<Digest, number>();
  for (const image of imageOfContainer.values()) containersOf.set(image, (containersOf.get(image) ?? 0) + 1);

  // As docker: a layer is shared when more than one image's chain holds it.
  const chainOf = (top: Digest | null) => {
    const chain: Digest[] = [];
    for (let id = top; id !== null && layers.has(id); id = layers.get(id)!.parent) chain.push(id);
    return chain;
  };
  const chains = rows.map(([, top]) => chainOf(top));
  const imageRefs = new Map<Digest, number>();
  for (const chain of chains) for (const id of chain) imageRefs.set(id, (imageRefs.get(id) ?? 0) + 1);

  const items = rows.map(([id, top, created], i): ImageUsage => {
    const size = top === null ? 0 : (chainSizes.get(top) ?? 0);
    const sharedSize = chains[i]!.reduce((sum, layer) => sum + ((imageRefs.get(layer) ?? 0) > 1 ? layers.get(layer)!.size : 0), 0);
    return { id, tags: tags.get(id) ?? [], created, size, sharedSize, uniqueSize: size - sharedSize, containers: containersOf.get(id) ?? 0 };
  });
  let totalSize = 0;
  for (const layer of imageRefs.keys()) totalSize += layers.get(layer)!.size;
  const unused = items.filter((image) => image.containers === 0);
  const images: UsageCategory<ImageUsage> = {
    totalCount: items.length,
    activeCount: items.length - unused.length,
    totalSize,
    reclaimable: unused.reduce((sum, image) => sum + image.uniqueSize, 0),
    items,
  };
  return [images, imageOfContainer];
}

async function containerUsage(
  store: Store,
  chainSizes: ReadonlyMap<Digest, number>,
  imageOfContainer: ReadonlyMap<string, Digest>,
): Promise<UsageCategory<ContainerUsage>> {
  const volumes = new Map<string, string[]>();
  for (const [container, volume] of store.db
    .prepare('SELECT DISTINCT container, volume FROM container_mounts WHERE volume IS NOT NULL ORDER BY container, position')
    .raw()
    .all() as Array<[string, string]>) {
    volumes.set(container, [...(volumes.get(container) ?? []), volume]);
  }
  const items: ContainerUsage[] = [];
  for (const container of store.containers.list()) {
    const sizeRw = await store.containers.writableSize(container);
    items.push({
      id: container.id,
      name: container.name,
      image: imageOfContainer.get(container.id) ?? null,
      layer: container.layer,
      created: container.created,
      mounts: container.mounts,
      sizeRw,
      sizeRootFs: sizeRw + (chainSizes.get(container.layer) ?? 0),
      volumes: volumes.get(container.id) ?? [],
    });
  }
  const active = items.filter((c) => c.mounts > 0);
  return {
    totalCount: items.length,
    activeCount: active.length,
    totalSize: items.reduce((sum, c) => sum + c.sizeRw, 0),
    reclaimable: items.filter((c) => c.mounts === 0).reduce((sum, c) => sum + c.sizeRw, 0),
    items,
  };
}

function volumeUsage(store: Store): UsageCategory<VolumeUsage> {
  const links = new Map(
    store.db.prepare('SELECT volume, count(DISTINCT container) FROM container_mounts WHERE volume IS NOT NULL GROUP BY volume').raw().all() as Array<
      [string, number]
    >,
  );
  const items = store.volumes
    .list()
    .filter((volume) => Object.keys(volume.options).length === 0)
    .map((volume): VolumeUsage => {
      let size: number;
      try {
        size = store.volumes.size(volume.name);
      } catch {
        size = -1;
      }
      return { name: volume.name, links: links.get(volume.name) ?? 0, size, created: volume.created };
    });
  const known = items.filter((v) => v.size >= 0);
  return {
    totalCount: items.length,
    activeCount: items.filter((v) => v.links > 0).length,
    totalSize: known.reduce((sum, v) => sum + v.size, 0),
    // As docker's: named volumes count too, though prune keeps them without --all.
    reclaimable: known.filter((v) => v.links === 0).reduce((sum, v) => sum + v.size, 0),
    items,
  };
}

function buildCacheUsage(records: BuildCacheRecord[]): UsageCategory<BuildCacheRecord> {
  return {
    totalCount: records.length,
    activeCount: records.filter((r) => r.inUse).length,
    totalSize: records.reduce((sum, r) => sum + r.size, 0),
    reclaimable: records.filter((r) => !r.inUse && !r.shared).reduce((sum, r) => sum + r.size, 0),
    items: records,
  };
}
