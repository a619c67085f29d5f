// The layer graph: read-only layers addressed by ChainID, shared by everything
// that uses them, with their reference counts kept in the same transaction as
// the change that alters them.
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';

import { applyLayerArchive, type ApplyResult, type LayerInput } from '../archive/apply.js';
import { exportLayerArchive } from '../archive/export.js';
import type { StorageDriver } from '../drivers/driver.js';
import { hexPrefixBounds, transaction, type Db, type Statement } from './database.js';
import { chainId as computeChainId, isDigest, parseDigest, shortId, type Digest } from './digest.js';
import { StoreError } from './errors.js';
import { beginStaging, discardStaged, endStaging, ownStart } from './staging.js';


/**
 * A stored tar-split, raw-deflated as the applier hands it out. Rows written
 * before held it gzipped once more; a raw deflate stream never starts with
 * gzip's 0x1f (its first block would have the reserved type 3).
 */
function storedSplit(column: Buffer): Buffer {
  return column[0] === 0x1f && column[1] === 0x8b ? gunzipSync(column) : column;
}

export interface Layer {
  chainId: Digest;
  diffId: Digest;
  parent: Digest | null;
  cacheId: string;
  driver: string;
  /** Bytes of file content in the layer, as docker reports a layer's size. */
  size: number;
  /** Bytes of the uncompressed tar the layer was imported from. */
  tarSize: number;
  entries: number;
  created: string;
  /** What holds the layer: child layers, images, containers, an explicit import. */
  refs: number;
  /** Whether a user imported it directly (strata layer import), which holds one reference. */
  explicit: boolean;
}

export interface ImportOptions {
  parent?: Digest | null;
  /** The DiffID the archive must have; with it, a layer already present is not read again. */
  expectedDiffId?: Digest;
  /** Whether the import itself holds a reference (a user's import, not an image's layer). */
  explicit?: boolean;
  /**
   * Whether this process takes a hold on the layer in the transaction that
   * registers it (see holdInTransaction), so nothing removes it before the
   * caller's own reference (an image row, a build cache entry) takes over.
   */
  hold?: boolean;
  onProgress?: (compressedBytesRead: number) => void;
}

export interface ImportResult {
  layer: Layer;
  /** True when the layer was already in the store: nothing new was written. */
  existed: boolean;
  compression?: ApplyResult['compression'];
  /** The hold taken with `hold: true`: pass it to releaseHoldInTransaction. */
  hold?: number;
}

/** A layer applied into its own directory but not registered: see LayerStore.stage. */
export interface StagedLayer {
  cacheId: string;
  parent: Digest | null;
  diffId: Digest;
  applied: ApplyResult;
}

interface LayerRow {
  chain_id: Digest;
  diff_id: Digest;
  parent: Digest | null;
  cache_id: string;
  driver: string;
  tar_size: number;
  content_size: number;
  entries: number;
  explicit: number;
  refs: number;
  created: string;
}

const COLUMNS = 'chain_id, diff_id, parent, cache_id, driver, tar_size, content_size, entries, explicit, refs, created';

function toLayer(row: LayerRow): Layer {
  return {
    chainId: row.chain_id,
    diffId: row.diff_id,
    parent: row.parent,
    cacheId: row.cache_id,
    driver: row.driver,
    size: row.content_size,
    tarSize: row.tar_size,
    entries: row.entries,
    created: row.created,
    refs: row.refs,
    explicit: row.explicit === 1,
  };
}

export class LayerStore {
  /** Statements of the hottest reads, prepared on first use. */
  private getStatement?: Statement;
  private chainStatement?: Statement;

  constructor(
    private readonly db: Db,
    private readonly driver: StorageDriver,
  ) {}

  get(chainId: Digest): Layer | undefined {
    // Prepared once: most calls on a layer start here.
    this.getStatement ??= this.db.prepare(`SELECT ${COLUMNS} FROM layers WHERE chain_id = ?`);
    const row = this.getStatement.get(chainId) as LayerRow | undefined;
    return row && toLayer(row);
  }

  list(): Layer[] {
    const rows = this.db.prepare(`SELECT ${COLUMNS} FROM layers ORDER BY created, chain_id`).all() as LayerRow[];
    return rows.map(toLayer);
  }

  /** Finds a layer by ChainID, its hex, or a unique prefix of either. */
  resolve(reference: string): Layer {
    const hex = reference.replace(/^sha256:/, '');
    if (!/^[0-9a-f]{1,64}$/.test(hex)) {
      throw new StoreError('ERR_LAYER_UNKNOWN', `no such layer: "${reference}" is not a layer id`);
    }
    const rows = this.db
      .prepare(`SELECT ${COLUMNS} FROM layers WHERE chain_id >= ? AND chain_id < ? LIMIT 2`)
      .all(...hexPrefixBounds(`sha256:${hex}`)) as LayerRow[];
    if (rows.length === 0) throw new StoreError('ERR_LAYER_UNKNOWN', `no such layer: ${reference}`);
    if (rows.length > 1) {
      throw new StoreError('ERR_LAYER_AMBIGUOUS', `layer id prefix "${reference}" matches several layers: give more digits`);
    }
    return toLayer(rows[0]!);
  }

  /**
   * Applies a layer tar (plain, gzip or zstd) on top of `parent` and registers
   * it. The layer becomes visible only once its data is on disk and its
   * metadata committed; on any failure nothing is registered or left behind.
   */
  async import(input: LayerInput, options: ImportOptions = {}): Promise<ImportResult> {
    const parent = options.parent ? this.requireLayer(options.parent, 'parent layer') : null;
    if (options.expectedDiffId) {
      const expected = parseDigest(options.expectedDiffId, 'layer digest');
      const existing = transaction(this.db, () => {
        const layer = this.get(computeChainId(parent?.chainId ?? null, expected));
        return layer && { layer: this.hold(layer, options.explicit ?? false), existed: true, ...(options.hold && { hold: this.holdInTransaction(layer.chainId) }) };
      });
      if (existing) return existing;
    }
    const staged = await this.stage(input, parent?.chainId ?? null, options);
    try {
      return { ...(await this.registerStaged(staged, options)), compression: staged.applied.compression };
    } catch (error) {
      await this.discardStagedLayer(staged);
      throw error;
    }
  }

  /**
   * Whether the driver makes a layer's directory without its parent's files
   * (overlay2 stacks layers when it mounts them; the others start a layer
   * from a copy or snapshot of its parent): such a layer can be staged while
   * its parent is still being applied.
   */
  get stacksLayers(): boolean {
    return this.driver.whiteouts === 'overlay';
  }

  /**
   * The first half of import: applies the tar into a new directory, recorded
   * as staged, whose data is on disk once this resolves. Nothing is
   * registered: pass the result to registerStaged once the parent is
   * registered, or to discardStagedLayer (the next open removes it if this
   * process dies). On failure (or abort) nothing is left behind. Unless the
   * driver stacks layers, `parent` must be registered already: its files are
   * copied.
   */
  async stage(
    input: LayerInput,
    parent: Digest | null,
    options: Pick<ImportOptions, 'expectedDiffId' | 'onProgress'> & { signal?: AbortSignal } = {},
  ): Promise<StagedLayer> {
    const parentCacheId = parent && !this.stacksLayers ? this.requireLayer(parent, 'parent layer').cacheId : null;
    const cacheId = randomBytes(32).toString('hex');
    const path = this.driver.layerPath(cacheId);
    beginStaging(this.db, path);
    try {
      const dir = await this.driver.createLayer(cacheId, parentCacheId);
      const applied = await applyLayerArchive(input, dir, {
        whiteouts: this.driver.whiteouts,
        ...(options.expectedDiffId && { expectedDiffId: options.expectedDiffId }),
        ...(options.onProgress && { onProgress: options.onProgress }),
        ...(options.signal && { signal: options.signal }),
      });
      return { cacheId, parent, diffId: parseDigest(applied.diffId, 'DiffID'), applied };
    } catch (error) {
      // Asked before the discard, which frees what the failed write used.
      const reason = (await this.driver.explainFailure?.(error)) ?? error;
      await discardStaged(this.db, path, (p) => this.driver.removePath(p));
      throw reason;
    }
  }

  /**
   * Registers a staged layer on its parent, which must be registered by now;
   * the same layer registered meanwhile is used instead, and the staged
   * directory removed. If this throws, the staged layer is still the
   * caller's to discard.
   */
  async registerStaged(staged: StagedLayer, options: Pick<ImportOptions, 'explicit' | 'hold'> = {}): Promise<ImportResult> {
    const registered = transaction(this.db, () => {
      const result = this.register(staged.cacheId, staged.parent, staged.diffId, staged.applied, options.explicit ?? false);
      return options.hold ? { ...result, hold: this.holdInTransaction(result.layer.chainId) } : result;
    });
    if (registered.existed) await this.discardStagedLayer(staged);
    return registered;
  }

  /** Removes a staged layer that is not to be registered. */
  async discardStagedLayer(staged: StagedLayer): Promise<void> {
    await discardStaged(this.db, this.driver.layerPath(staged.cacheId), (p) => this.driver.removePath(p));
  }

  /** Streams the layer as the exact tar it was imported from: sha256 of the stream is its DiffID. */
  export(chainId: Digest): Readable {
    const layer = this.requireLayer(chainId, 'layer');
    const row = this.db.prepare('SELECT tar_split, sha256_checkpoints FROM layers WHERE chain_id = ?').get(chainId) as {
      tar_split: Buffer;
      sha256_checkpoints: Buffer | null;
    };
    return exportLayerArchive(this.driver.layerDir(layer.cacheId), storedSplit(row.tar_split), layer.diffId, row.sha256_checkpoints);
  }

  /**
   * Drops a user's reference to a layer. A layer still used by a child layer,
   * an image or a container stays; one nothing uses any more is removed, and
   * so, in turn, is each parent that this leaves unused.
   */
  async remove(chainId: Digest): Promise<Layer[]> {
    const doomed = transaction(this.db, () => {
      const layer = this.requireLayer(chainId, 'layer');
      const held = layer.refs - (layer.explicit ? 1 : 0);
      if (held > 0) throw new StoreError('ERR_LAYER_IN_USE', `layer ${shortId(chainId)} is in use: ${this.describeUsers(layer)}`);
      if (!layer.explicit) return this.deleteUnusedInTransaction(layer);
      this.db.prepare('UPDATE layers SET explicit = 0 WHERE chain_id = ?').run(chainId);
      return this.releaseInTransaction(chainId);
    });
    await this.purge(doomed);
    return doomed;
  }

  /** Takes a reference for a new user (a container, an image); call inside its transaction. */
  retainInTransaction(chainId: Digest): Layer {
    const layer = this.requireLayer(chainId, 'layer');
    this.db.prepare('UPDATE layers SET refs = refs + 1 WHERE chain_id = ?').run(chainId);
    return layer;
  }

  /**
   * Drops a reference inside the caller's transaction. Layers left unused are
   * deleted from the metadata and their directories staged for removal:
   * pass the result to `purge` once the transaction has committed.
   */
  releaseInTransaction(chainId: Digest): Layer[] {
    this.db.prepare('UPDATE layers SET refs = refs - 1 WHERE chain_id = ?').run(chainId);
    const layer = this.requireLayer(chainId, 'layer');
    return layer.refs > 0 ? [] : this.deleteUnusedInTransaction(layer);
  }

  /**
   * Takes a reference for work this process has under way, recorded with
   * its pid so that, should it die, the next open releases it. Call inside
   * the caller's transaction; returns the hold's id.
   */
  holdInTransaction(chainId: Digest): number {
    this.retainInTransaction(chainId);
    return Number(
      this.db.prepare('INSERT INTO layer_holds (layer, pid, pid_start) VALUES (?, ?, ?)').run(chainId, process.pid, ownStart).lastInsertRowid,
    );
  }

  /** Drops a hold inside the caller's transaction; as releaseInTransaction, returns the layers left unused. */
  releaseHoldInTransaction(hold: number): Layer[] {
    const row = this.db.prepare('SELECT layer FROM layer_holds WHERE id = ?').get(hold) as { layer: Digest } | undefined;
    if (!row) return [];
    this.db.prepare('DELETE FROM layer_holds WHERE id = ?').run(hold);
    return this.releaseInTransaction(row.layer);
  }

  /** Removes the directories of layers a committed transaction deleted. */
  async purge(doomed: readonly Layer[]): Promise<void> {
    for (const layer of doomed) {
      await discardStaged(this.db, this.driver.layerPath(layer.cacheId), (p) => this.driver.removePath(p));
    }
  }

  /** Deletes a layer nothing uses (and, in turn, parents this leaves unused); pass the result to `purge`. */
  deleteUnusedInTransaction(layer: Layer): Layer[] {
    this.db.prepare('DELETE FROM layers WHERE chain_id = ?').run(layer.chainId);
    beginStaging(this.db, this.driver.layerPath(layer.cacheId));
    return layer.parent ? [layer, ...this.releaseInTransaction(layer.parent)] : [layer];
  }

  /**
   * Every layer's size with its parents' (docker's image Size, when the layer
   * is an image's top), from one query: a listing of thousands of layers or
   * images does not look each chain up.
   */
  chainSizes(): Map<Digest, number> {
    const rows = this.db.prepare('SELECT chain_id, parent, content_size FROM layers').raw().all() as Array<[Digest, Digest | null, number]>;
    const own = new Map(rows.map(([chainId, parent, size]) => [chainId, { parent, size }]));
    const sizes = new Map<Digest, number>();
    for (const [chainId] of rows) {
      // Up to the first layer already summed, then back down adding each one.
      const pending: Digest[] = [];
      let below = 0;
      for (let id: Digest | null = chainId; id !== null; id = own.get(id)?.parent ?? null) {
        const known = sizes.get(id);
        if (known !== undefined) {
          below = known;
          break;
        }
        pending.push(id);
      }
      for (const id of pending.reverse()) {
        below += own.get(id)!.size;
        sizes.set(id, below);
      }
    }
    return sizes;
  }

  /** The cache ids of a layer chain, top-most first, as overlay stacks them. */
  chainCacheIds(chainId: Digest): string[] {
    // One statement for the whole chain: a mount of a 500-layer image is not 500 queries.
    this.chainStatement ??= this.db
      .prepare(
        `WITH RECURSIVE chain (chain_id, parent, cache_id, depth) AS (
           SELECT chain_id, parent, cache_id, 0 FROM layers WHERE chain_id = ?
           UNION ALL
           SELECT layers.chain_id, layers.parent, layers.cache_id, chain.depth + 1 FROM layers JOIN chain ON layers.chain_id = chain.parent
         )
         SELECT cache_id FROM chain ORDER BY depth`,
      )
      .pluck();
    return this.chainStatement.all(chainId) as string[];
  }

  /** The layer directories of a chain, top-most first. */
  chainDirs(chainId: Digest): string[] {
    return this.chainCacheIds(chainId).map((id) => this.driver.layerDir(id));
  }

  /**
   * Registers a layer whose files are already in the driver's directory for
   * `cacheId` (applied, or adopted from a container); the same layer already
   * present is returned instead. Joins the caller's transaction if one is open.
   */
  register(cacheId: string, parent: Digest | null, diffId: Digest, applied: Omit<ApplyResult, 'compression'>, explicit: boolean): ImportResult {
    const chainId = computeChainId(parent, diffId);
    return transaction(this.db, () => {
      const existing = this.get(chainId);
      if (existing) return { layer: this.hold(existing, explicit), existed: true };
      if (parent && !this.get(parent)) {
        throw new StoreError('ERR_LAYER_UNKNOWN', `parent layer ${shortId(parent)} was removed while this layer was being imported`);
      }
      this.db
        .prepare(
          `INSERT INTO layers (chain_id, diff_id, parent, cache_id, driver, tar_size, content_size, entries, tar_split, sha256_checkpoints, explicit, refs, created)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          chainId,
          diffId,
          parent,
          cacheId,
          this.driver.name,
          applied.tarSize,
          applied.contentSize,
          applied.entries,
          applied.tarSplit,
          applied.checkpoints,
          explicit ? 1 : 0,
          explicit ? 1 : 0,
          new Date().toISOString(),
        );
      if (parent) this.db.prepare('UPDATE layers SET refs = refs + 1 WHERE chain_id = ?').run(parent);
      endStaging(this.db, this.driver.layerPath(cacheId));
      return { layer: this.get(chainId)!, existed: false };
    });
  }

  /** Marks an existing layer as explicitly imported (once), holding a reference. */
  private hold(layer: Layer, explicit: boolean): Layer {
    if (!explicit || layer.explicit) return layer;
    this.db.prepare('UPDATE layers SET explicit = 1, refs = refs + 1 WHERE chain_id = ? AND explicit = 0').run(layer.chainId);
    return this.get(layer.chainId)!;
  }

  requireLayer(chainId: string, what: string): Layer {
    const layer = isDigest(chainId) ? this.get(chainId) : undefined;
    if (!layer) throw new StoreError('ERR_LAYER_UNKNOWN', `no such ${what}: ${chainId}`);
    return layer;
  }

  private describeUsers(layer: Layer): string {
    const children = this.db.prepare('SELECT chain_id FROM layers WHERE parent = ?').all(layer.chainId) as Array<{ chain_id: string }>;
    const containers = this.db.prepare('SELECT id FROM containers WHERE layer = ?').all(layer.chainId) as Array<{ id: string }>;
    const users = [
      ...children.map((c) => `child layer ${shortId(c.chain_id)}`),
      ...containers.map((c) => `container ${shortId(c.id)}`),
    ];
    return users.length > 0 ? users.join(', ') : `${layer.refs} reference(s)`;
  }
}
