// A store root, laid out like /var/lib/docker: <driver>/ for layer data,
// image/ for metadata, containers/, volumes/. Opening it repairs what a
// crashed process left half-done.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { BtrfsDriver } from '../drivers/btrfs.js';
import { DevicemapperDriver, type ThinIdRegistry } from '../drivers/devicemapper.js';
import type { DriverStatus, StorageDriver } from '../drivers/driver.js';
import { Overlay2Driver } from '../drivers/overlay2.js';
import { VfsDriver } from '../drivers/vfs.js';
import { statfsSync } from '../native/fs.js';
import { nearestExisting } from '../system/probes.js';
import { openDatabase, transaction, type Db } from './database.js';
import { StoreError } from './errors.js';
import { ContainerStore } from './containers.js';
import { checkStore, describeFinding } from './fsck.js';
import { ImageStore } from './images.js';
import { LayerStore } from './layers.js';
import { closeSession, endDeadSessions, openSession, othersLive, sessionsDir } from './sessions.js';
import { recoverStaging } from './staging.js';
import { VolumeStore } from './volumes.js';

export const DEFAULT_ROOT = '/var/lib/stratafs';
export const DEFAULT_DRIVER = 'overlay2';

export interface StoreOptions {
  /** The store root; defaults to $STRATA_ROOT, then /var/lib/stratafs. */
  root?: string;
  /** The storage driver; defaults to $STRATA_STORAGE_DRIVER, then the one the root already uses, then overlay2. */
  driver?: string;
  /**
   * Options for the driver, as docker's --storage-opt (devicemapper: dm.datadev,
   * dm.basesize...; vfs: vfs.copy); defaults to $STRATA_STORAGE_OPTS, "key=value,key=value".
   */
  driverOptions?: Readonly<Record<string, string>>;
}

function parseStorageOpts(text: string | undefined): Record<string, string> {
  const options: Record<string, string> = {};
  for (const item of (text ?? '').split(',').filter(Boolean)) {
    const at = item.indexOf('=');
    if (at <= 0) throw new StoreError('ERR_DRIVER_UNSUPPORTED', `storage option "${item}" is not key=value`);
    options[item.slice(0, at).trim()] = item.slice(at + 1).trim();
  }
  return options;
}

interface DriverContext {
  db: Db;
  options: Readonly<Record<string, string>>;
}

const drivers: Record<string, (root: string, context: DriverContext) => StorageDriver> = {
  overlay2: (root) => new Overlay2Driver(root),
  btrfs: (root) => new BtrfsDriver(root),
  devicemapper: (root, { db, options }) => new DevicemapperDriver(root, thinIdRegistry(db), options),
  vfs: (root, { options }) => new VfsDriver(root, 'vfs', options),
};

/**
 * The order drivers are tried in when nothing names one, the first that works
 * winning: a root on btrfs gets btrfs (its snapshots beat stacking overlays on
 * it), an overlay-capable one overlay2, anything else vfs. devicemapper is used
 * only when named, as Docker did at the end.
 */
function priority(root: string): string[] {
  return statfsSync(nearestExisting(root)).typeName === 'btrfs' ? ['btrfs', 'overlay2', 'vfs'] : ['overlay2', 'btrfs', 'vfs'];
}

/** devicemapper's thin ids in the dm_devices table, each change committed on its own. */
function thinIdRegistry(db: Db): ThinIdRegistry {
  return {
    reserve: (key) =>
      transaction(db, () => {
        const used = db.prepare('SELECT thin_id FROM dm_devices ORDER BY thin_id').pluck().all() as number[];
        let id = 0;
        while (used[id] === id) id++;
        db.prepare('INSERT INTO dm_devices (key, thin_id) VALUES (?, ?)').run(key, id);
        return id;
      }),
    lookup: (key) => db.prepare('SELECT thin_id FROM dm_devices WHERE key = ?').pluck().get(key) as number | undefined,
    entries: () =>
      new Map((db.prepare('SELECT key, thin_id FROM dm_devices ORDER BY thin_id').all() as Array<{ key: string; thin_id: number }>).map((r) => [r.key, r.thin_id])),
    release: (key) => {
      transaction(db, () => db.prepare('DELETE FROM dm_devices WHERE key = ?').run(key));
    },
  };
}

export class Store {
  readonly layers: LayerStore;
  readonly containers: ContainerStore;
  readonly volumes: VolumeStore;
  readonly images: ImageStore;

  private constructor(
    readonly root: string,
    readonly driver: StorageDriver,
    readonly db: Db,
    /** What the open found half-done and repaired or removed. */
    readonly recovered: string[],
    /** What the driver found at start-up, as `docker info` lists it. */
    readonly driverStatus: DriverStatus,
    /** This process's session marker, removed on close. */
    private readonly session: string,
  ) {
    this.layers = new LayerStore(db, driver);
    this.volumes = new VolumeStore(db, root);
    this.containers = new ContainerStore(db, driver, this.layers, this.volumes);
    this.images = new ImageStore(db, this.layers);
  }

  static async open(options: StoreOptions = {}): Promise<Store> {
    const root = resolve(options.root ?? process.env.STRATA_ROOT ?? DEFAULT_ROOT);
    for (const dir of ['', 'image', 'containers', 'volumes']) mkdirSync(join(root, dir), { recursive: true, mode: 0o700 });
    mkdirSync(sessionsDir(root), { recursive: true, mode: 0o700 });
    const db = openDatabase(join(root, 'image', 'metadata.db'));
    let session: string | undefined;
    try {
      const requested = options.driver ?? process.env.STRATA_STORAGE_DRIVER;
      if (requested !== undefined && !drivers[requested]) {
        throw new StoreError(
          'ERR_DRIVER_UNSUPPORTED',
          `unknown storage driver "${requested}": use one of ${Object.keys(drivers).join(', ')}` +
            (['aufs', 'zfs'].includes(requested) ? ` (${requested} is not available in this kernel or build)` : ''),
        );
      }
      const { driver, status } = await startDriver(root, pinnedDriver(db, requested), { db, options: options.driverOptions ?? parseStorageOpts(process.env.STRATA_STORAGE_OPTS) });
      recordDriver(db, driver.name);
      // A process that had the store open and is gone ended without closing it.
      const unclean = endDeadSessions(db, root) > 0;
      // Recorded before looking for others: of two processes opening at once, at least one sees the other.
      session = openSession(db, root);
      const recovered = await recoverStaging(db, (path) => driver.removePath(path));
      // Those repairs would break the work of another process under way (a view it has mounted, a move it is making).
      const alone = !othersLive(db, root);
      const store = new Store(root, driver, db, recovered, status, session);
      recovered.push(...(await store.containers.recoverAdoptions()));
      if (alone) {
        recovered.push(...(await store.containers.recover()));
        const mounted = new Set(store.containers.list().filter((c) => c.mounts > 0).map((c) => c.id));
        recovered.push(...(await store.volumes.recover(mounted)));
      }
      if (unclean) recovered.push(...(await checkStore(store, { repair: true, quick: true })).map((finding) => `fsck: ${describeFinding(finding)}`));
      return store;
    } catch (error) {
      db.close();
      if (session !== undefined) closeSession(session);
      throw error;
    }
  }

  /** Closes the metadata; what the driver keeps in the kernel (mounts, devices) stays for the next open. */
  close(): void {
    if (!this.db.open) return;
    this.db.close();
    closeSession(this.session);
  }

  /**
   * Closes the store and releases what its driver keeps in the kernel
   * (devicemapper: mounts, thin devices, the pool, its loop devices). The data
   * stays on disk; the next open activates it again.
   */
  async shutdown(): Promise<void> {
    try {
      await this.driver.release?.();
    } finally {
      this.close();
    }
  }
}

/**
 * The driver a root must use: the one asked for, else the one it was first
 * used with (as Docker keeps its prior driver); undefined lets the host decide.
 * Switching a root that holds layers is refused.
 */
function pinnedDriver(db: Db, requested: string | undefined): string | undefined {
  const row = db.prepare("SELECT value FROM settings WHERE key = 'driver'").get() as { value: string } | undefined;
  if (row && requested && row.value !== requested) {
    const layers = (db.prepare('SELECT count(*) AS n FROM layers').get() as { n: number }).n;
    if (layers > 0) {
      throw new StoreError(
        'ERR_DRIVER_MISMATCH',
        `the store uses the ${row.value} driver and holds ${layers} layer(s); it cannot switch to ${requested}`,
      );
    }
  }
  return requested ?? row?.value;
}

function recordDriver(db: Db, name: string): void {
  // Already recorded (every open but the first): nothing to write.
  if (db.prepare("SELECT value FROM settings WHERE key = 'driver'").pluck().get() === name) return;
  transaction(db, () =>
    db.prepare("INSERT INTO settings (key, value) VALUES ('driver', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(name),
  );
}

/** Starts the named driver, or the first in Docker's order that works on this host. */
async function startDriver(
  root: string,
  name: string | undefined,
  context: DriverContext,
): Promise<{ driver: StorageDriver; status: DriverStatus }> {
  const refusals: string[] = [];
  for (const candidate of name ? [name] : priority(root)) {
    const driver = drivers[candidate]!(root, context);
    try {
      mkdirSync(join(root, driver.name), { recursive: true, mode: 0o700 });
      return { driver, status: await driver.init() };
    } catch (error) {
      if (name || !(error instanceof StoreError)) throw error;
      refusals.push(error.message);
    }
  }
  throw new StoreError('ERR_DRIVER_UNSUPPORTED', `no storage driver works here: ${refusals.join('; ')}`);
}
