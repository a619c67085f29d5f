// The build cache: a step is reused when it starts from the same image state
// (its parent chain, named by the id of that state's config), with the same
// normalized instruction and, for COPY and ADD, the same source content.
// Entries hold a reference on their top layer, so pruning them is what frees
// the layers that only the cache still holds.
import { relaxed, transaction } from '../store/database.js';
import { sha256, type Digest } from '../store/digest.js';
import type { Layer } from '../store/layers.js';
import type { Store } from '../store/store.js';
import type { BuildCacheRecord } from '../store/usage.js';
import type { FileHashes } from './context.js';

export interface CacheKey {
  /** The config id of the state the step starts from, or "scratch". */
  parent: string;
  instruction: string;
  /** Digest of the COPY/ADD sources; '' for other instructions. */
  sources: string;
}

export interface CacheEntry extends CacheKey {
  /** The resulting state's config id. */
  id: Digest;
  config: Buffer;
  topLayer: Digest | null;
  created: string;
  lastUsed: string;
}

export interface BuildCacheUsage {
  /** Cache entries (steps). */
  count: number;
  /** Entries whose layer an image uses. */
  active: number;
  /** Bytes of the layers that only the cache holds. */
  size: number;
  /** What `builder prune -a` would free. */
  reclaimable: number;
}

export interface PruneOptions {
  /** Remove every entry, not only those no image uses. */
  all?: boolean;
  /** Only entries last used before this time. */
  before?: Date;
}

export interface PruneResult {
  deleted: Digest[];
  reclaimed: number;
}

interface CacheRow {
  parent: string;
  instruction: string;
  sources: string;
  id: Digest;
  config: Buffer;
  top_layer: Digest | null;
  created: string;
  last_used: string;
}

const toEntry = (row: CacheRow): CacheEntry => ({
  parent: row.parent,
  instruction: row.instruction,
  sources: row.sources,
  id: row.id,
  config: row.config,
  topLayer: row.top_layer,
  created: row.created,
  lastUsed: row.last_used,
});

/** How stale last_used may get before a hit records the time again (prune filters work in minutes and hours). */
const LAST_USED_RESOLUTION_MS = 60_000;

export class BuildCache {
  constructor(private readonly store: Store) {}

  /** The entry for a step, marked as used now; undefined when the step must run. */
  lookup(key: CacheKey): CacheEntry | undefined {
    const row = this.store.db
      .prepare('SELECT * FROM build_cache WHERE parent = ? AND instruction = ? AND sources = ?')
      .get(key.parent, key.instruction, key.sources) as CacheRow | undefined;
    if (!row) return undefined;
    // A layer can only be gone if the metadata was edited by hand: then the step runs again.
    if (row.top_layer && !this.store.layers.get(row.top_layer)) return undefined;
    // Refreshed as relatime refreshes atime: only once it is stale, so an
    // unchanged rebuild writes nothing (and its process exits without a checkpoint).
    const now = new Date();
    if (now.getTime() - Date.parse(row.last_used) > LAST_USED_RESOLUTION_MS) {
      relaxed(this.store.db, () =>
        this.store.db
          .prepare('UPDATE build_cache SET last_used = ? WHERE parent = ? AND instruction = ? AND sources = ?')
          .run(now.toISOString(), key.parent, key.instruction, key.sources),
      );
    }
    return toEntry(row);
  }

  /**
   * Records what a step made (replacing an older entry for the same key, as a
   * --no-cache build does), holding a reference on its top layer. Call in
   * the caller's transaction; purge the returned layers after it commits.
   */
  recordInTransaction(key: CacheKey, config: Buffer, topLayer: Digest | null): { id: Digest; doomed: Layer[] } {
    const db = this.store.db;
    const id = sha256(config);
    if (topLayer) this.store.layers.retainInTransaction(topLayer);
    const previous = db
      .prepare('SELECT top_layer FROM build_cache WHERE parent = ? AND instruction = ? AND sources = ?')
      .get(key.parent, key.instruction, key.sources) as { top_layer: Digest | null } | undefined;
    const now = new Date().toISOString();
    db.prepare(
      `INSERT INTO build_cache (parent, instruction, sources, id, config, top_layer, created, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (parent, instruction, sources) DO UPDATE SET id = excluded.id, config = excluded.config, top_layer = excluded.top_layer,
         created = excluded.created, last_used = excluded.last_used`,
    ).run(key.parent, key.instruction, key.sources, id, config, topLayer, now, now);
    const doomed = previous?.top_layer ? this.store.layers.releaseInTransaction(previous.top_layer) : [];
    return { id, doomed };
  }

  /** Context files' content hashes from earlier builds; new ones are kept by flush(), in one write. */
  fileHashes(): FileHashes & { flush(): void } {
    const db = this.store.db;
    const range = db.prepare('SELECT path, stamp, hash FROM build_file_hashes WHERE path BETWEEN ? AND ?').raw();
    const learned = new Map<string, { stamp: string; hash: Buffer }>();
    return {
      // One range of the index, from the first of the paths to the last: a
      // step's files are one directory's, next to each other in it. (JavaScript
      // orders a few characters outside the BMP otherwise than SQLite's bytes:
      // a file left out is only hashed again.)
      get: (files) => {
        const found = new Map<string, Buffer>();
        if (files.length === 0) return found;
        const wanted = new Map(files.map((f) => [f.path, f.stamp]));
        let low = files[0]!.path;
        let high = low;
        for (const { path } of files) {
          if (path < low) low = path;
          else if (path > high) high = path;
        }
        for (const [path, stamp, hash] of range.all(low, high) as Array<[string, string, Buffer]>) {
          if (wanted.get(path) === stamp) found.set(path, hash);
        }
        return found;
      },
      set: (path, stamp, hash) => void learned.set(path, { stamp, hash }),
      flush: () => {
        if (learned.size === 0) return;
        relaxed(db, () => {
          const upsert = db.prepare('INSERT INTO build_file_hashes (path, stamp, hash) VALUES (?, ?, ?) ON CONFLICT (path) DO UPDATE SET stamp = excluded.stamp, hash = excluded.hash');
          for (const [path, { stamp, hash }] of learned) upsert.run(path, stamp, hash);
        });
        learned.clear();
      },
    };
  }

  list(): CacheEntry[] {
    return (this.store.db.prepare('SELECT * FROM build_cache ORDER BY created, id').all() as CacheRow[]).map(toEntry);
  }

  usage(): BuildCacheUsage {
    const entries = this.list();
    if (entries.length === 0) return { count: 0, active: 0, size: 0, reclaimable: 0 };
    const layers = this.allLayers();
    const used = this.layersUsedOutsideCache(layers);
    const onlyCache = chainsOf(layers, entries.map((e) => e.topLayer));
    let size = 0;
    for (const layer of onlyCache.values()) if (!used.has(layer.chainId)) size += layer.size;
    const active = entries.filter((e) => e.topLayer !== null && used.has(e.topLayer)).length;
    return { count: entries.length, active, size, reclaimable: size };
  }

  /**
   * The entries as `system df -v` lists build cache records. A metadata step
   * shares its parent's layer: each layer is counted once, with the first
   * step that has it.
   */
  records(): BuildCacheRecord[] {
    const entries = this.list();
    if (entries.length === 0) return [];
    const layers = this.allLayers();
    const used = this.layersUsedOutsideCache(layers);
    const counted = new Set<Digest>();
    return entries.map((entry) => {
      const layer = entry.topLayer && !counted.has(entry.topLayer) ? layers.get(entry.topLayer) : undefined;
      if (layer) counted.add(layer.chainId);
      const inUse = entry.topLayer !== null && used.has(entry.topLayer);
      return {
        id: entry.id,
        type: 'regular',
        description: entry.instruction,
        size: layer?.size ?? 0,
        created: entry.created,
        lastUsed: entry.lastUsed,
        inUse,
        shared: inUse,
      };
    });
  }

  /**
   * Removes entries (by default those whose layer no image or container
   * uses) and the layers only they held; reports the bytes freed.
   */
  async prune(options: PruneOptions = {}): Promise<PruneResult> {
    const before = this.usage().size;
    const used = this.layersUsedOutsideCache(this.allLayers());
    const doomedEntries = this.list().filter(
      (e) =>
        (options.all || e.topLayer === null || !used.has(e.topLayer)) &&
        (options.before === undefined || Date.parse(e.lastUsed) < options.before.getTime()),
    );
    const doomed = transaction(this.store.db, () => {
      // The remembered file hashes are cache too: all of it goes with all of the cache.
      if (options.all && options.before === undefined) this.store.db.prepare('DELETE FROM build_file_hashes').run();
      const layers: Layer[] = [];
      for (const entry of doomedEntries) {
        this.store.db
          .prepare('DELETE FROM build_cache WHERE parent = ? AND instruction = ? AND sources = ?')
          .run(entry.parent, entry.instruction, entry.sources);
        if (entry.topLayer) layers.push(...this.store.layers.releaseInTransaction(entry.topLayer));
      }
      return layers;
    });
    await this.store.layers.purge(doomed);
    return { deleted: doomedEntries.map((e) => e.id), reclaimed: Math.max(0, before - this.usage().size) };
  }

  /** Every layer by its ChainID, read in one query: chains are walked in memory, not one lookup per layer. */
  private allLayers(): Map<Digest, Layer> {
    return new Map(this.store.layers.list().map((layer) => [layer.chainId, layer]));
  }

  /** Every layer in the chains of images, containers and explicit imports. */
  private layersUsedOutsideCache(layers: ReadonlyMap<Digest, Layer>): Set<Digest> {
    const db = this.store.db;
    const tops = [
      ...(db.prepare('SELECT top_layer FROM images WHERE top_layer IS NOT NULL').pluck().all() as Digest[]),
      ...(db.prepare('SELECT layer FROM containers').pluck().all() as Digest[]),
      ...(db.prepare('SELECT chain_id FROM layers WHERE explicit = 1').pluck().all() as Digest[]),
    ];
    return new Set(chainsOf(layers, tops).keys());
  }
}

/** The layers of the chains below `tops`, each once. */
function chainsOf(layers: ReadonlyMap<Digest, Layer>, tops: ReadonlyArray<Digest | null>): Map<Digest, Layer> {
  const found = new Map<Digest, Layer>();
  for (const top of tops) {
    for (let layer = top ? layers.get(top) : undefined; layer && !found.has(layer.chainId); layer = layer.parent ? layers.get(layer.parent) : undefined) {
      found.set(layer.chainId, layer);
    }
  }
  return found;
}

/** Build-cache usage for `system df`: entries, those in use, and the bytes only the cache holds. */
export function buildCacheUsage(store: Store): BuildCacheUsage {
  return new BuildCache(store).usage();
}
