// A store root, laid out like /var/lib/docker: <driver>/ for layer data,
// image/ for metadata, containers/, volumes/. Opening it repairs what a
// crashed process left half-done.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { ContainerDriver } from '../drivers/driver.js';
import { Overlay2Driver } from '../drivers/overlay2.js';
import { openDatabase, transaction, type Db } from './database.js';
import { StoreError } from './errors.js';
import { ContainerStore } from './containers.js';
import { ImageStore } from './images.js';
import { LayerStore } from './layers.js';
import { recoverStaging } from './staging.js';

export const DEFAULT_ROOT = '/var/lib/stratafs';
export const DEFAULT_DRIVER = 'overlay2';

export interface StoreOptions {
  /** The store root; defaults to $STRATA_ROOT, then /var/lib/stratafs. */
  root?: string;
  /** The storage driver; defaults to $STRATA_STORAGE_DRIVER, then the one the root already uses, then overlay2. */
  driver?: string;
}

const drivers: Record<string, (root: string) => ContainerDriver> = {
  overlay2: (root) => new Overlay2Driver(root),
};

export class Store {
  readonly layers: LayerStore;
  readonly containers: ContainerStore;
  readonly images: ImageStore;

  private constructor(
    readonly root: string,
    readonly driver: ContainerDriver,
    readonly db: Db,
    /** What the open found half-done and repaired or removed. */
    readonly recovered: string[],
    /** What the driver found at start-up, as `docker info` lists it. */
    readonly driverStatus: Array<[string, string]>,
  ) {
    this.layers = new LayerStore(db, driver);
    this.containers = new ContainerStore(db, driver, this.layers);
    this.images = new ImageStore(db, this.layers);
  }

  static async open(options: StoreOptions = {}): Promise<Store> {
    const root = resolve(options.root ?? process.env.STRATA_ROOT ?? DEFAULT_ROOT);
    for (const dir of ['', 'image', 'containers', 'volumes']) mkdirSync(join(root, dir), { recursive: true, mode: 0o700 });
    const db = openDatabase(join(root, 'image', 'metadata.db'));
    try {
      const requested = options.driver ?? process.env.STRATA_STORAGE_DRIVER;
      if (requested !== undefined && !drivers[requested]) {
        throw new StoreError(
          'ERR_DRIVER_UNSUPPORTED',
          `unknown storage driver "${requested}": use one of ${Object.keys(drivers).join(', ')}`,
        );
      }
      const driver = drivers[chooseDriver(db, requested)]!(root);
      mkdirSync(join(root, driver.name), { recursive: true, mode: 0o700 });
      const status = await driver.init();
      const recovered = await recoverStaging(db);
      const store = new Store(root, driver, db, recovered, status);
      recovered.push(...(await store.containers.recover()));
      return store;
    } catch (error) {
      db.close();
      throw error;
    }
  }

  close(): void {
    this.db.close();
  }
}

/** A root keeps the driver it was first used with, as Docker's does; switching needs an empty store. */
function chooseDriver(db: Db, requested: string | undefined): string {
  return transaction(db, () => {
    const row = db.prepare("SELECT value FROM settings WHERE key = 'driver'").get() as { value: string } | undefined;
    const name = requested ?? row?.value ?? DEFAULT_DRIVER;
    if (row && row.value !== name) {
      const layers = (db.prepare('SELECT count(*) AS n FROM layers').get() as { n: number }).n;
      if (layers > 0) {
        throw new StoreError(
          'ERR_DRIVER_MISMATCH',
          `the store uses the ${row.value} driver and holds ${layers} layer(s); it cannot switch to ${name}`,
        );
      }
    }
    db.prepare("INSERT INTO settings (key, value) VALUES ('driver', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(name);
    return name;
  });
}
