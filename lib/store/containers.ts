// Container layers: a thin writable layer on a read-only layer chain,
// copy-on-write through overlayfs, destroyed with the container.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { applyLayerArchive } from '../archive/apply.js';
import type { Change } from '../archive/changes.js';
import { changesArchivePieces } from '../archive/tar-writer.js';
import type { StorageDriver, WritableLayout, WritableOptions } from '../drivers/driver.js';
import { performMount } from '../drivers/mounter.js';
import { attachMounts, createMountTargets, detachMounts, type ContainerMount } from '../mounts/attach.js';
import { prepareMounts } from '../mounts/prepare.js';
import type { MountSpec } from '../mounts/spec.js';
import { unmount } from '../native/mount.js';
import { isMountPoint, mountPoints, processesUsing } from '../system/mountinfo.js';
import { hexPrefixBounds, relaxed, transaction, type Db } from './database.js';
import { parseDigest, shortId, type Digest } from './digest.js';
import { StoreError } from './errors.js';
import type { ImportResult, Layer, LayerStore } from './layers.js';
import { beginStaging, discardStaged, endStaging, isLive, ownStart } from './staging.js';
import type { VolumeStore } from './volumes.js';

/** How a container's writable layer is made and mounted. */
export type ContainerOptions = WritableOptions;

export interface CreateOptions extends ContainerOptions {
  name?: string;
  /** Volumes, bind mounts and tmpfs mounted in the root filesystem whenever it is mounted. */
  mounts?: readonly MountSpec[];
  /** The tenant the container belongs to: it may use only its own (or shared) volumes. */
  owner?: string;
  /** Allow bind mounts of sensitive host paths (/, /etc, the store root, runtime sockets...). */
  allowSensitiveBinds?: boolean;
  /** Metadata, key to value, as docker's --label (prune filters on it). */
  labels?: Record<string, string>;
  /**
   * The image the container is made from, recorded in the transaction that
   * creates it, so a concurrent removal of the image either sees the
   * container or makes this create fail.
   */
  image?: Digest;
}

export interface Container {
  id: string;
  name: string | null;
  /** The read-only layer the container sits on (its image's top layer). */
  layer: Digest;
  cacheId: string;
  driver: string;
  options: ContainerOptions;
  /** How many callers have it mounted. */
  mounts: number;
  created: string;
  owner: string | null;
  labels: Record<string, string>;
  /**
   * Bytes of its writable layer (docker's SizeRw) as last measured: at create,
   * at its last unmount (where the driver counts it cheaply), at commit.
   * Current while it is not mounted; null when not known (see
   * ContainerStore.writableSize).
   */
  sizeRw: number | null;
}

export interface ContainerSize {
  /** Bytes the container changed or added: its writable layer (docker's SizeRw). */
  sizeRw: number;
  /** sizeRw plus its layers' sizes (docker's SizeRootFs, the "virtual" size). */
  sizeRootFs: number;
}

interface ContainerRow {
  id: string;
  name: string | null;
  layer: Digest;
  cache_id: string;
  driver: string;
  options: string;
  mounts: number;
  created: string;
  owner: string | null;
  labels: string;
  size_rw: number | null;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** How long a mount, unmount, commit or removal waits for another process's of the same container. */
const CLAIM_WAIT_MS = 30_000;
/** How often it looks again meanwhile: a mount takes a few milliseconds. */
const CLAIM_RETRY_MS = 2;

function toContainer(row: ContainerRow): Container {
  return {
    id: row.id,
    name: row.name,
    layer: row.layer,
    cacheId: row.cache_id,
    driver: row.driver,
    options: JSON.parse(row.options) as ContainerOptions,
    mounts: row.mounts,
    created: row.created,
    owner: row.owner,
    labels: JSON.parse(row.labels) as Record<string, string>,
    sizeRw: row.size_rw,
  };
}

/** The dirty marker overlay leaves in a volatile mount's workdir until we remove it. */
const volatileMarker = (layout: WritableLayout) => layout.work && join(layout.work, 'work', 'incompat', 'volatile');

export class ContainerStore {
  constructor(
    private readonly db: Db,
    private readonly driver: StorageDriver,
    private readonly layers: LayerStore,
    private readonly volumes: VolumeStore,
  ) {}

  async create(layer: Digest, options: CreateOptions = {}): Promise<Container> {
    const { name, mounts: specs = [], owner, allowSensitiveBinds, labels = {}, image, ...mountOptions } = options;
    if (name !== undefined && !NAME.test(name)) {
      throw new StoreError('ERR_INVALID_NAME', `invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    const id = randomBytes(32).toString('hex');
    const cacheId = randomBytes(32).toString('hex');
    const path = this.driver.layerPath(cacheId);
    const prepared = await prepareMounts(this.volumes, specs, { owner: owner ?? null, allowSensitiveBinds: allowSensitiveBinds ?? false });
    try {
      beginStaging(this.db, path);
    } catch (error) {
      await prepared.rollback();
      throw error;
    }
    // Checked before and inside the transaction: another process may remove the image meanwhile.
    const requireImage = () => {
      if (image !== undefined && !this.db.prepare('SELECT 1 FROM images WHERE id = ?').get(image)) {
        throw new StoreError('ERR_IMAGE_UNKNOWN', `image ${shortId(image)} was removed while the container was being created`);
      }
    };
    try {
      requireImage();
      await this.driver.createWritable(cacheId, this.layers.requireLayer(layer, 'layer').cacheId, mountOptions);
      transaction(this.db, () => {
        requireImage();
        if (name !== undefined && this.db.prepare('SELECT 1 FROM containers WHERE name = ?').get(name)) {
          throw new StoreError('ERR_NAME_IN_USE', `the container name "${name}" is already in use`);
        }
        this.layers.retainInTransaction(parseDigest(layer, 'layer id'));
        this.db
          .prepare(
            `INSERT INTO containers (id, name, layer, cache_id, driver, options, created, owner, labels, size_rw)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
          )
          .run(id, name ?? null, layer, cacheId, this.driver.name, JSON.stringify(mountOptions), new Date().toISOString(), owner ?? null, JSON.stringify(labels));
        const insert = this.db.prepare('INSERT INTO container_mounts (container, position, spec, volume, allow_sensitive) VALUES (?, ?, ?, ?, ?)');
        prepared.mounts.forEach((mount, position) => insert.run(id, position, JSON.stringify(mount.spec), mount.volume, Number(mount.allowSensitive)));
        if (image !== undefined) this.db.prepare('INSERT INTO container_images (container, image) VALUES (?, ?)').run(id, image);
        endStaging(this.db, path);
      });
    } catch (error) {
      await discardStaged(this.db, path, (p) => this.driver.removePath(p));
      await prepared.rollback();
      throw error;
    }
    return this.get(id)!;
  }

  get(id: string): Container | undefined {
    const row = this.db.prepare('SELECT * FROM containers WHERE id = ?').get(id) as ContainerRow | undefined;
    return row && toContainer(row);
  }

  list(): Container[] {
    return (this.db.prepare('SELECT * FROM containers ORDER BY created, id').all() as ContainerRow[]).map(toContainer);
  }

  /** Finds a container by name, id, or a unique id prefix. */
  resolve(reference: string): Container {
    const byName = this.db.prepare('SELECT * FROM containers WHERE name = ?').get(reference) as ContainerRow | undefined;
    if (byName) return toContainer(byName);
    if (/^[0-9a-f]{1,64}$/.test(reference)) {
      const rows = this.db.prepare('SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 2').all(...hexPrefixBounds(reference)) as ContainerRow[];
      if (rows.length > 1) throw new StoreError('ERR_CONTAINER_AMBIGUOUS', `container id prefix "${reference}" matches several containers`);
      if (rows[0]) return toContainer(rows[0]);
    }
    throw new StoreError('ERR_CONTAINER_UNKNOWN', `no such container: ${reference}`);
  }

  /** The container's volumes, bind mounts and tmpfs mounts, in the order given at create. */
  containerMounts(container: Container): ContainerMount[] {
    const rows = this.db
      .prepare('SELECT spec, volume, allow_sensitive AS allowSensitive FROM container_mounts WHERE container = ? ORDER BY position')
      .all(container.id) as Array<{ spec: string; volume: string | null; allowSensitive: number }>;
    return rows.map((row) => ({ spec: JSON.parse(row.spec) as MountSpec, volume: row.volume, allowSensitive: row.allowSensitive === 1 }));
  }

  layout(container: Container): WritableLayout {
    return this.driver.writable(container.cacheId);
  }

  /** The read-only layer directories under the container, top-most first. */
  lowers(container: Container): string[] {
    return this.layers.chainDirs(container.layer);
  }

  private chain(container: Container): string[] {
    return this.layers.chainCacheIds(container.layer);
  }

  /** Mounts the container's root filesystem (once; later calls count) and returns its path. */
  async mount(reference: string): Promise<string> {
    return this.exclusively(reference, async (container) => {
      const layout = this.layout(container);
      if (!isMountPoint(layout.merged)) {
        const mounts = this.containerMounts(container);
        if (container.options.readOnly && mounts.length > 0) await this.createMountTargets(container, mounts);
        await this.mountRootfs(container, layout);
        try {
          await attachMounts(layout.merged, mounts, this.volumes);
        } catch (error) {
          await unmount(layout.merged, ['detach']);
          throw error;
        }
      }
      // Its size is unknown until the last unmount measures it: a crash before then leaves it so.
      relaxed(this.db, () => this.db.prepare('UPDATE containers SET mounts = mounts + 1, size_rw = NULL WHERE id = ?').run(container.id));
      return layout.merged;
    });
  }

  /** Drops one mount; the last detaches the root filesystem. */
  async unmount(reference: string): Promise<void> {
    await this.exclusively(reference, async (container) => {
      const remaining = relaxed(this.db, () => {
        this.db.prepare('UPDATE containers SET mounts = max(mounts - 1, 0) WHERE id = ?').run(container.id);
        return this.get(container.id)!.mounts;
      });
      if (remaining === 0) {
        await this.unmountRootfs(container, false);
        // Its writable layer cannot change until the next mount: record its size
        // now where the driver counts it cheaply; elsewhere (a diff against the
        // layers) mark it unknown, and the next df measures and records it.
        const size = this.driver.writableUsage ? await this.driver.writableUsage(container.cacheId) : null;
        relaxed(this.db, () => this.db.prepare('UPDATE containers SET size_rw = ? WHERE id = ? AND mounts = 0').run(size, container.id));
      }
    });
  }

  /**
   * Runs `fn` on the container as it is now while no other mount, unmount,
   * commit or removal of it runs, in this process or another: whether it is
   * mounted and the mount, unmount or commit that follows must be one step.
   *
   * Not re-entrant: the claim is this process's, so a call in `fn` that takes
   * it again (mount, unmount, commit, remove of the same container) would wait
   * for itself until ERR_CONTAINER_BUSY. `fn` uses the private steps instead
   * (mountRootfs, unmountRootfs, commitInPlace); nothing the layer store or
   * the driver does takes a container's claim.
   */
  private async exclusively<T>(reference: string, fn: (container: Container) => Promise<T>): Promise<T> {
    const container = await this.claim(reference);
    try {
      await this.finishInterruptedCommit(container);
      return await fn(container);
    } finally {
      relaxed(this.db, () => this.db.prepare('DELETE FROM container_claims WHERE container = ?').run(container.id));
    }
  }

  /**
   * A commit whose process died after recording its layer and before moving
   * the upper directory into it (its claim was just broken): the move is
   * finished before anything mounts or removes the container, not only at
   * the next open (recoverAdoptions).
   */
  private async finishInterruptedCommit(container: Container): Promise<void> {
    const { upper } = this.layout(container);
    const move = this.db.prepare('SELECT to_path AS "to", pid, pid_start AS pidStart FROM adoptions WHERE from_path = ?').get(upper) as
      | { to: string; pid: number; pidStart: string }
      | undefined;
    if (move && !isLive(move.pid, move.pidStart)) await this.completeAdoption(upper, move.to);
  }

  /** Waits for the container's claim (breaking one whose process is gone), takes it, and returns the container's row. */
  private async claim(reference: string): Promise<Container> {
    const deadline = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      const outcome = relaxed(this.db, (): { claimed: Container } | { heldBy: number; container: Container } => {
        const container = this.resolve(reference);
        const owner = this.db.prepare('SELECT pid, pid_start AS pidStart FROM container_claims WHERE container = ?').get(container.id) as
          | { pid: number; pidStart: string }
          | undefined;
        if (owner && isLive(owner.pid, owner.pidStart)) return { heldBy: owner.pid, container };
        this.db.prepare('INSERT OR REPLACE INTO container_claims (container, pid, pid_start) VALUES (?, ?, ?)').run(container.id, process.pid, ownStart);
        return { claimed: container };
      });
      if ('claimed' in outcome) return outcome.claimed;
      if (Date.now() > deadline) {
        throw new StoreError(
          'ERR_CONTAINER_BUSY',
          `container ${shortId(outcome.container.id)} is being mounted, unmounted, committed or removed by process ${outcome.heldBy}: try again`,
        );
      }
      await sleep(CLAIM_RETRY_MS);
    }
  }

  async changes(reference: string): Promise<Change[]> {
    const container = this.resolve(reference);
    return this.withView(container, (view) => this.driver.changes(container.cacheId, this.chain(container), view));
  }

  /**
   * Makes the container's changes a new read-only layer on the container's
   * layer. Its DiffID is always that of the tar of the changes, as exporting
   * the diff and importing it would give.
   *
   * An unmounted container's files are adopted as the layer in place where the
   * driver can (overlay moves the upper directory, btrfs snapshots, vfs
   * reflink-copies): only the tar's digest and tar-split are computed, no data
   * is written again. The container then sits on the new layer, so its diff is
   * empty until it changes something else.
   *
   * A mounted container, or one whose changes cannot be adopted, is committed
   * by streaming the tar into a new layer (no archive is written). Each file is
   * read as it is at that moment; one that changes size while it is read fails
   * the commit. The container keeps its layer and its diff.
   *
   * The layer is held as an explicit import, or with `hold` by this process
   * (see LayerStore.holdInTransaction) until the caller's own reference
   * takes over: a build's cache entry.
   *
   * It holds the container's claim throughout, as mount, unmount and remove
   * do, and waits for theirs: otherwise a mount in another process between
   * the check that the container is not mounted and the move of its upper
   * directory would mount a directory that becomes a layer's, and an unmount
   * or removal could pull a mounted container's files from under a streamed
   * commit.
   */
  async commit(reference: string, options: { hold?: boolean } = {}): Promise<ImportResult> {
    const hold = options.hold ?? false;
    return this.exclusively(reference, async (container) => {
      if (!isMountPoint(this.layout(container).merged) && (await this.driver.adoptable(container.cacheId))) {
        return this.commitInPlace(container, hold);
      }
      return this.withView(container, async (view) => {
        const changes = await this.driver.changes(container.cacheId, this.chain(container), view);
        return this.layers.import({ pieces: changesArchivePieces(view, changes) }, { parent: container.layer, explicit: !hold, hold });
      });
    });
  }

  /** Only with the container's claim held (see commit). */
  private async commitInPlace(container: Container, hold: boolean): Promise<ImportResult> {
    const layout = this.layout(container);
    const indexed = await this.withView(container, async (view) => {
      const changes = await this.driver.changes(container.cacheId, this.chain(container), view);
      return applyLayerArchive({ pieces: changesArchivePieces(view, changes) }, layout.upper, { whiteouts: 'index' });
    });
    const cacheId = randomBytes(32).toString('hex');
    const path = this.driver.layerPath(cacheId);
    beginStaging(this.db, path);
    try {
      const move = await this.driver.adoptWritable(container.cacheId, cacheId);
      const registered = transaction(this.db, () => {
        this.requireUnchanged(container);
        const result = this.layers.register(cacheId, container.layer, parseDigest(indexed.diffId, 'DiffID'), indexed, !hold);
        // The container now sits on the layer holding its changes.
        this.layers.retainInTransaction(result.layer.chainId);
        this.layers.releaseInTransaction(container.layer); // still held by the new layer
        // Its changes are the layer's now: its own writable layer is empty.
        this.db.prepare('UPDATE containers SET layer = ?, size_rw = 0 WHERE id = ?').run(result.layer.chainId, container.id);
        if (move && !result.existed) {
          this.db.prepare('INSERT INTO adoptions (from_path, to_path, pid, pid_start) VALUES (?, ?, ?, ?)').run(move.from, move.to, process.pid, ownStart);
        }
        return hold ? { ...result, hold: this.layers.holdInTransaction(result.layer.chainId) } : result;
      });
      if (registered.existed) {
        // Those changes were a layer already: the container's copy of them goes.
        await discardStaged(this.db, path, (p) => this.driver.removePath(p));
        if (move) await this.emptyDirectory(move.from);
      } else if (move) {
        await this.completeAdoption(move.from, move.to);
      }
      return registered;
    } catch (error) {
      await discardStaged(this.db, path, (p) => this.driver.removePath(p));
      throw error;
    }
  }

  /** Moves a container's directory into its layer and gives the container an empty one. Safe to redo. */
  private async completeAdoption(from: string, to: string): Promise<void> {
    if (!existsSync(to) || (await readdir(to)).length === 0) {
      await rm(to, { recursive: true, force: true });
      await rename(from, to);
    }
    await mkdir(from, { recursive: true, mode: 0o755 });
    relaxed(this.db, () => this.db.prepare('DELETE FROM adoptions WHERE from_path = ?').run(from));
  }

  private async emptyDirectory(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o755 });
  }

  /**
   * What the container changed or added, as docker's SizeRw (from the
   * filesystem's own count where the driver has one, else the regular files
   * among its changes, hardlinks counted once); plus its layers' sizes for the
   * virtual size.
   */
  async size(reference: string): Promise<ContainerSize> {
    const container = this.resolve(reference);
    const sizeRw = await this.measureWritable(container);
    let layers = 0;
    for (let layer = this.layers.get(container.layer); layer; layer = layer.parent ? this.layers.get(layer.parent) : undefined) {
      layers += layer.size;
    }
    return { sizeRw, sizeRootFs: sizeRw + layers };
  }

  /**
   * The size of the container's writable layer: the recorded one when it is
   * current (not mounted, known), else measured now; an unmounted
   * container's unknown size is recorded once measured.
   */
  async writableSize(container: Container): Promise<number> {
    if (container.mounts === 0 && container.sizeRw !== null) return container.sizeRw;
    const size = await this.measureWritable(container);
    if (container.mounts === 0) {
      relaxed(this.db, () =>
        this.db.prepare('UPDATE containers SET size_rw = ? WHERE id = ? AND mounts = 0 AND size_rw IS NULL').run(size, container.id),
      );
    }
    return size;
  }

  private measureWritable(container: Container): Promise<number> {
    return this.driver.writableUsage ? this.driver.writableUsage(container.cacheId) : this.changedBytes(container);
  }

  private changedBytes(container: Container): Promise<number> {
    return this.withView(container, async (view) => {
      const seen = new Set<number>();
      let bytes = 0;
      for (const change of await this.driver.changes(container.cacheId, this.chain(container), view)) {
        if (change.kind === 'D') continue;
        const stat = lstatSync(join(view, change.path));
        if (stat.isFile() && !seen.has(stat.ino)) {
          seen.add(stat.ino);
          bytes += stat.size;
        }
      }
      return bytes;
    });
  }

  /**
   * Destroys the container's writable layer and drops its reference on the
   * layer below. A mounted container is unmounted first; if its mount is busy
   * the error says which processes hold it, unless `force` detaches it lazily.
   * Returns the layers this left unused, which were removed with it.
   */
  async remove(reference: string, options: { force?: boolean; volumes?: boolean } = {}): Promise<Layer[]> {
    // Exclusive, or a concurrent mount could mount it between the unmount and the delete.
    return this.exclusively(reference, async (container) => {
      await this.unmountRootfs(container, options.force ?? false);
      const anonymous = this.containerMounts(container).filter((m) => m.spec.type === 'volume' && m.spec.source === '' && m.volume !== null);
      const path = this.driver.layerPath(container.cacheId);
      const doomed = transaction(this.db, () => {
        this.requireUnchanged(container);
        // Its directory is becoming a layer's: removing it now would take the layer's data.
        if (this.db.prepare('SELECT 1 FROM adoptions WHERE from_path = ?').get(this.layout(container).upper)) {
          throw new StoreError('ERR_CONTAINER_BUSY', `container ${shortId(container.id)} is being committed by another process: try again`);
        }
        this.db.prepare('DELETE FROM containers WHERE id = ?').run(container.id);
        beginStaging(this.db, path);
        return this.layers.releaseInTransaction(container.layer);
      });
      await discardStaged(this.db, path, (p) => this.driver.removePath(p));
      await this.layers.purge(doomed);
      // As `docker rm -v`: only the anonymous volumes go, and one another container uses stays.
      if (options.volumes) {
        for (const mount of anonymous) {
          await this.volumes.remove(mount.volume!).catch((error: unknown) => {
            if ((error as StoreError).code !== 'ERR_VOLUME_IN_USE') throw error;
          });
        }
      }
      return doomed;
    });
  }

  /** Inside a transaction: fails if another process removed the container, or committed it, since it was read. */
  private requireUnchanged(container: Container): void {
    const row = this.db.prepare('SELECT layer FROM containers WHERE id = ?').get(container.id) as { layer: Digest } | undefined;
    if (!row) throw new StoreError('ERR_CONTAINER_UNKNOWN', `container ${shortId(container.id)} was removed by another process`);
    if (row.layer !== container.layer) {
      throw new StoreError('ERR_CONTAINER_BUSY', `container ${shortId(container.id)} was committed by another process meanwhile: try again`);
    }
  }

  /** Finishes the moves of commits whose process died before making them. */
  async recoverAdoptions(): Promise<string[]> {
    const repaired: string[] = [];
    const adoptions = this.db.prepare('SELECT from_path AS "from", to_path AS "to", pid, pid_start AS pidStart FROM adoptions').all() as Array<{
      from: string;
      to: string;
      pid: number;
      pidStart: string;
    }>;
    for (const { from, to } of adoptions.filter((move) => !isLive(move.pid, move.pidStart))) {
      await this.completeAdoption(from, to);
      repaired.push(`finished moving ${from} into its layer after an interrupted commit`);
    }
    return repaired;
  }

  /**
   * Repairs what an unclean shutdown left: views left mounted, mount counts
   * of root filesystems that are no longer mounted, and volatile writable
   * layers, whose contents cannot be trusted after a crash and are
   * discarded. Only while no other process has the store open: its work
   * under way looks the same.
   */
  async recover(): Promise<string[]> {
    const repaired: string[] = [];
    // The mount table read once, not once per container: every open runs this.
    const mounted = new Set(mountPoints());
    for (const container of this.list()) {
      const layout = this.layout(container);
      const view = this.viewPath(container);
      if (mounted.has(view)) {
        await unmount(view, ['detach']);
        repaired.push(`container ${shortId(container.id)}: unmounted a view left by an interrupted diff or commit`);
      }
      if (mounted.has(layout.merged)) continue;
      if (container.mounts > 0) {
        // What it wrote while mounted was never measured.
        this.db.prepare('UPDATE containers SET mounts = 0, size_rw = NULL WHERE id = ?').run(container.id);
        repaired.push(`container ${shortId(container.id)}: reset a stale mount count`);
      }
      const marker = volatileMarker(layout);
      if (container.options.volatile && marker && existsSync(marker)) {
        await rm(layout.upper, { recursive: true, force: true });
        await rm(layout.work!, { recursive: true, force: true });
        await mkdir(layout.upper, { mode: 0o755 });
        this.db.prepare('UPDATE containers SET size_rw = 0 WHERE id = ?').run(container.id);
        repaired.push(`container ${shortId(container.id)}: discarded its volatile writable layer after an unclean shutdown`);
      }
    }
    return repaired;
  }

  private async mountRootfs(container: Container, layout: WritableLayout): Promise<void> {
    // Synchronous: two mkdirs cost less than two trips through the thread pool.
    for (const dir of [layout.work, layout.merged]) if (dir) mkdirSync(dir, { recursive: true, mode: 0o700 });
    await performMount(this.driver.rootfsMount(container.cacheId, this.chain(container), container.options), layout.merged);
  }

  private async unmountRootfs(container: Container, force: boolean): Promise<void> {
    const layout = this.layout(container);
    if (isMountPoint(layout.merged)) {
      try {
        await detachMounts(layout.merged, this.containerMounts(container), this.volumes, force);
        await unmount(layout.merged);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
        // A lazy detach frees the mount only once its users let go, so it is
        // the forced path alone: a plain unmount releases the layers at once.
        if (force) {
          await unmount(layout.merged, ['detach']);
        } else {
          const holders = processesUsing(layout.merged).map((p) => `${p.command} (pid ${p.pid})`);
          throw new StoreError(
            'ERR_CONTAINER_BUSY',
            `container ${shortId(container.id)} is mounted at ${layout.merged} and busy` +
              (holders.length > 0 ? `: used by ${holders.join(', ')}` : ' (a mount below it, or an open file)') +
              '; stop those, or force a lazy detach',
          );
        }
      }
    }
    this.db.prepare('UPDATE containers SET mounts = 0 WHERE id = ?').run(container.id);
    const marker = volatileMarker(layout);
    if (container.options.volatile && marker && existsSync(marker)) {
      // A clean unmount: make the data durable, then the layer can be trusted and mounted again.
      execFileSync('sync', ['-f', layout.upper]);
    }
    // The workdir is scratch space, the mount point only a mount point (Docker removes it too).
    for (const dir of [layout.work, layout.merged]) if (dir) await rm(dir, { recursive: true, force: true });
  }

  /** A read-only root filesystem cannot get mount points: they are made first, through a writable view. */
  private async createMountTargets(container: Container, mounts: readonly ContainerMount[]): Promise<void> {
    const view = this.viewPath(container);
    await mkdir(view, { recursive: true, mode: 0o700 });
    await this.mountRootfs({ ...container, options: { ...container.options, readOnly: false } }, { ...this.layout(container), merged: view });
    try {
      await createMountTargets(view, mounts);
    } finally {
      await unmount(view);
      await rm(view, { recursive: true, force: true });
    }
  }

  private viewPath(container: Container): string {
    return join(this.driver.layerPath(container.cacheId), 'view');
  }

  /** Runs `fn` with a directory showing the container's tree, mounting a read-only view if the driver needs one. */
  private async withView<T>(container: Container, fn: (view: string) => Promise<T>): Promise<T> {
    const layout = this.layout(container);
    if (isMountPoint(layout.merged)) return fn(layout.merged);
    const spec = this.driver.viewMount(container.cacheId, this.chain(container), container.options);
    if (!spec) return fn(layout.upper);
    const view = this.viewPath(container);
    await mkdir(view, { recursive: true, mode: 0o700 });
    await performMount(spec, view);
    try {
      return await fn(view);
    } finally {
      await unmount(view);
      await rm(view, { recursive: true, force: true });
    }
  }
}
