// fsck: checks a store's metadata against its data and against the kernel
// (mounts, loop and device-mapper devices), and repairs what it can. It never
// deletes data a row references: a row without its data is dropped only when
// nothing uses it, and reported otherwise.
//
// Other processes may be at work on the same root. Each check reads the
// metadata in one transaction after listing the disk, so work that starts
// meanwhile is seen as work (its staging row or its layer row) rather than an
// orphan; states that are only transient while a process is mid-way (a mount
// not yet counted) are left alone while another process has the store open.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { DevicemapperDriver } from '../drivers/devicemapper.js';
import { detachLoop } from '../native/loop.js';
import { unmount } from '../native/mount.js';
import { mountsBelow } from '../system/mountinfo.js';
import { relaxed, transaction } from './database.js';
import { shortId, type Digest } from './digest.js';
import type { Layer } from './layers.js';
import { othersLive } from './sessions.js';
import { discardStaged, isLive, stagedRows } from './staging.js';
import type { Store } from './store.js';

export type FindingKind =
  /** A staging entry or layer hold of a process that is gone. */
  | 'unfinished-work'
  /** A row whose data directory is gone. */
  | 'missing-data'
  /** A directory that no row and no work under way owns. */
  | 'orphan-data'
  /** A layer's reference count disagrees with what uses it. */
  | 'refcount'
  /** A layer nothing uses any more. */
  | 'unused-layer'
  /** A container's mount count or a volume's use count disagrees with the mount table. */
  | 'mount-count'
  /** A mount under the root that nothing owns. */
  | 'stale-mount'
  /** A loop device on a file under the root that nothing uses. */
  | 'leaked-loop'
  /** A device-mapper device or thin id of the store's pool that nothing uses. */
  | 'leaked-device';

export interface Finding {
  kind: FindingKind;
  /** What the finding is about: a layer, container or volume id, a path, a device. */
  object: string;
  detail: string;
  /** Whether this run repaired it. */
  repaired: boolean;
}

export interface CheckOptions {
  repair?: boolean;
  /**
   * Only the checks cheap enough for an open after an unclean shutdown: the
   * metadata, one listing of each data directory, the mount table. Leaves
   * out loop and device-mapper devices.
   */
  quick?: boolean;
}

type Report = (kind: FindingKind, object: string, detail: string, repair?: () => Promise<unknown> | unknown) => Promise<void>;

export async function checkStore(store: Store, options: CheckOptions = {}): Promise<Finding[]> {
  const findings: Finding[] = [];
  const report: Report = async (kind, object, detail, fix) => {
    let repaired = false;
    if (options.repair && fix) {
      try {
        await fix();
        repaired = true;
      } catch (error) {
        detail += ` (repair failed: ${(error as Error).message})`;
      }
    }
    findings.push({ kind, object, detail, repaired });
  };
  await checkUnfinishedWork(store, report);
  await checkMounts(store, report);
  await checkMissingData(store, report);
  await checkReferences(store, report);
  await checkOrphanData(store, report);
  if (!options.quick) {
    await checkLoopDevices(store, report);
    await checkDeviceMapper(store, report);
  }
  return findings;
}

/** One line for a finding, as `store.recovered` and the CLI list them. */
export function describeFinding(finding: Finding): string {
  return `${finding.kind} ${finding.object}: ${finding.detail}${finding.repaired ? ' (repaired)' : ''}`;
}

async function checkUnfinishedWork(store: Store, report: Report): Promise<void> {
  const { db, driver } = store;
  for (const row of stagedRows(db).filter((r) => !isLive(r.pid, r.pidStart))) {
    await report('unfinished-work', row.path, `left half-made or half-removed by process ${row.pid}, which is gone`, () =>
      discardStaged(db, row.path, (p) => driver.removePath(p)),
    );
  }
  const holds = db.prepare('SELECT id, layer, pid, pid_start AS pidStart FROM layer_holds').all() as Array<{
    id: number;
    layer: Digest;
    pid: number;
    pidStart: string;
  }>;
  for (const hold of holds.filter((h) => !isLive(h.pid, h.pidStart))) {
    await report('unfinished-work', hold.layer, `a reference held by process ${hold.pid}, which is gone, for an import it did not finish`, () =>
      store.layers.purge(transaction(db, () => store.layers.releaseHoldInTransaction(hold.id))),
    );
  }
}

/**
 * Container mount counts and volume use counts against the mount table, then
 * mounts below the root that nothing owns (unmounted deepest first).
 */
async function checkMounts(store: Store, report: Report): Promise<void> {
  const { db, driver, root } = store;
  const structural = structuralDirs(store);
  const mounted = new Set(mountsBelow(root).filter((point) => !structural.has(point)));
  const busyElsewhere = othersLive(db, root);
  /** Mount points owned along with everything mounted below them. */
  const ownedTrees: string[] = [];
  for (const container of store.containers.list()) {
    const { merged } = store.containers.layout(container);
    const isMounted = mounted.has(merged);
    if (container.mounts > 0 && !isMounted) {
      await report('mount-count', container.id, `counts ${container.mounts} mount(s) but its root filesystem is not mounted`, () =>
        relaxed(db, () => db.prepare('UPDATE containers SET mounts = 0 WHERE id = ?').run(container.id)),
      );
    }
    // A process mounting a container mounts first and counts after; a view lives while a diff or commit runs.
    if (isMounted && (container.mounts > 0 || busyElsewhere)) ownedTrees.push(merged);
    if (busyElsewhere) ownedTrees.push(join(driver.layerPath(container.cacheId), 'view'));
  }
  for (const volume of store.volumes.list()) {
    if (Object.keys(volume.options).length === 0) continue;
    const isMounted = mounted.has(volume.mountpoint);
    if (volume.active > 0 && !isMounted) {
      await report('mount-count', volume.name, `counts ${volume.active} user(s) but its options are not mounted`, () =>
        transaction(db, () => db.prepare('UPDATE volumes SET active = 0 WHERE name = ?').run(volume.name)),
      );
    }
    if (isMounted && (volume.active > 0 || busyElsewhere)) ownedTrees.push(volume.mountpoint);
  }
  // devicemapper keeps every layer's and container's device mounted at its layer path.
  if (driver instanceof DevicemapperDriver) {
    for (const key of knownKeys(store)) ownedTrees.push(driver.layerPath(key));
  }
  const owned = (point: string) => ownedTrees.some((tree) => point === tree || point.startsWith(`${tree}/`));
  const stale = [...mounted].filter((point) => !owned(point)).sort((a, b) => b.split('/').length - a.split('/').length);
  for (const point of stale) {
    await report('stale-mount', point, 'mounted below the root, and nothing in the store uses it', async () => {
      // Detaching a mount above takes those below it along.
      if (mountsBelow(point).includes(point)) await unmount(point, ['detach']);
    });
  }
}

/**
 * The root and the directories that hold its objects (volumes/, the driver's
 * layer area...): a filesystem mounted on one is the administrator's choice of
 * where the data lives, never a leftover.
 */
function structuralDirs(store: Store): Set<string> {
  const probe = '0'.repeat(64); // an id no object has, to find where objects go
  const objects = [
    store.driver.layerPath(probe),
    store.driver.writable(probe).merged,
    join(store.volumes.dir, probe),
    join(store.root, 'image', probe),
    join(store.root, 'containers', probe),
  ];
  const dirs = new Set<string>();
  for (const path of objects) {
    for (let dir = dirname(path); dir.startsWith(store.root); dir = dirname(dir)) if (!dir.includes(probe)) dirs.add(dir);
  }
  return dirs;
}

/** Rows whose data is gone: dropped when nothing uses them, since the data cannot come back. */
async function checkMissingData(store: Store, report: Report): Promise<void> {
  const { db, driver } = store;
  // A commit moving a container's directory into its layer: for a moment neither is where its row says.
  const adoptions = db.prepare('SELECT from_path AS "from", to_path AS "to" FROM adoptions').all() as Array<{ from: string; to: string }>;
  const adopting = new Set(adoptions.flatMap((move) => [move.from, move.to]));
  for (const layer of store.layers.list()) {
    const dir = driver.layerDir(layer.cacheId);
    if (existsSync(dir) || adopting.has(dir)) continue;
    const users = layer.refs - (layer.explicit ? 1 : 0);
    await report(
      'missing-data',
      layer.chainId,
      `its directory ${dir} is gone` + (users > 0 ? `; ${users} user(s) still need it: remove them and import the layer again` : ''),
      users > 0
        ? undefined
        : async () => {
            const doomed = transaction(db, () => {
              const current = store.layers.get(layer.chainId);
              if (!current || current.refs - (current.explicit ? 1 : 0) > 0) return [];
              db.prepare('UPDATE layers SET explicit = 0, refs = 0 WHERE chain_id = ?').run(layer.chainId);
              return store.layers.deleteUnusedInTransaction(current);
            });
            await store.layers.purge(doomed);
          },
    );
  }
  for (const container of store.containers.list()) {
    const { upper } = store.containers.layout(container);
    if (existsSync(upper) || adopting.has(upper)) continue;
    await report('missing-data', container.id, `its writable layer ${upper} is gone; the container is dropped`, async () => {
      const doomed = transaction(db, () => {
        if (db.prepare('DELETE FROM containers WHERE id = ?').run(container.id).changes === 0) return [];
        return store.layers.releaseInTransaction(container.layer);
      });
      await driver.removePath(driver.layerPath(container.cacheId));
      await store.layers.purge(doomed);
    });
  }
  for (const volume of store.volumes.list()) {
    if (existsSync(volume.mountpoint)) continue;
    const users = store.volumes.users(volume.name);
    await report(
      'missing-data',
      volume.name,
      `its data directory ${volume.mountpoint} is gone` + (users.length > 0 ? `; used by container(s) ${users.map(shortId).join(', ')}` : ''),
      users.length > 0 ? undefined : () => store.volumes.remove(volume.name, { force: true }),
    );
  }
}

/**
 * Each layer's refs against what uses it: child layers, images, containers,
 * build cache entries, an explicit import, holds of work under way. Counted and fixed in one
 * transaction, so concurrent changes (each in its own transaction) are seen
 * whole or not at all.
 */
async function checkReferences(store: Store, report: Report): Promise<void> {
  const { db } = store;
  const fixes: Array<{ chainId: Digest; refs: number; users: number }> = [];
  const doomed: Layer[] = [];
  transaction(db, () => {
    const rows = db
      .prepare(
        `SELECT l.chain_id AS chainId, l.refs,
           (SELECT count(*) FROM layers c WHERE c.parent = l.chain_id)
           + (SELECT count(*) FROM images i WHERE i.top_layer = l.chain_id)
           + (SELECT count(*) FROM containers k WHERE k.layer = l.chain_id)
           + (SELECT count(*) FROM layer_holds h WHERE h.layer = l.chain_id)
           + (SELECT count(*) FROM build_cache b WHERE b.top_layer = l.chain_id)
           + l.explicit AS users
         FROM layers l`,
      )
      .all() as Array<{ chainId: Digest; refs: number; users: number }>;
    fixes.push(...rows.filter((row) => row.refs !== row.users || row.users === 0));
  });
  for (const fix of fixes) {
    if (fix.refs !== fix.users) {
      await report('refcount', fix.chainId, `counts ${fix.refs} reference(s), but ${fix.users} thing(s) use it`, () =>
        transaction(db, () => db.prepare('UPDATE layers SET refs = ? WHERE chain_id = ?').run(fix.users, fix.chainId)),
      );
    }
    if (fix.users === 0) {
      await report('unused-layer', fix.chainId, 'nothing uses it (no child layer, image, container, build cache entry or explicit import)', () => {
        transaction(db, () => {
          const layer = store.layers.get(fix.chainId);
          // Checked again: another process may have started using it since.
          if (layer && layer.refs === 0) doomed.push(...store.layers.deleteUnusedInTransaction(layer));
        });
      });
    }
  }
  await store.layers.purge(doomed);
}

/** The keys (cache ids, devicemapper keys) the metadata knows, and those of work under way. */
function knownKeys(store: Store): Set<string> {
  const { db } = store;
  return new Set([
    ...(db.prepare('SELECT cache_id FROM layers UNION SELECT cache_id FROM containers UNION SELECT key FROM dm_devices').pluck().all() as string[]),
    ...stagedRows(db).map((row) => basename(row.path)),
  ]);
}

/** Directories under the driver's layer area and under volumes/ that nothing owns. */
async function checkOrphanData(store: Store, report: Report): Promise<void> {
  const { db, driver } = store;
  const layerArea = dirname(driver.layerPath('x'));
  const volumeArea = store.volumes.dir;
  // Listed before the metadata is read: anything made meanwhile is staged first.
  const layerEntries = existsSync(layerArea) ? readdirSync(layerArea) : [];
  const volumeEntries = readdirSync(volumeArea);
  const { keys, volumes } = transaction(db, () => ({
    keys: knownKeys(store),
    volumes: new Set([
      ...(db.prepare('SELECT name FROM volumes').pluck().all() as string[]),
      ...stagedRows(db).map((row) => row.path).filter((path) => dirname(path) === volumeArea).map((path) => basename(path)),
    ]),
  }));
  const removeUnmounted = (path: string, remove: (path: string) => Promise<void>) => async () => {
    if (mountsBelow(path).length > 0) throw new Error(`${path} has mounts below it`);
    await remove(path);
  };
  for (const name of layerEntries.filter((entry) => !keys.has(entry))) {
    const path = join(layerArea, name);
    await report('orphan-data', path, 'no layer or container owns it, and no process is making it', removeUnmounted(path, (p) => driver.removePath(p)));
  }
  for (const name of volumeEntries.filter((entry) => !volumes.has(entry))) {
    const path = join(volumeArea, name);
    await report('orphan-data', path, 'no volume owns it, and no process is making it', removeUnmounted(path, (p) => rm(p, { recursive: true, force: true })));
  }
}

/** Loop devices on files under the root that nothing mounts and no device-mapper table uses. */
async function checkLoopDevices(store: Store, report: Report): Promise<void> {
  const mountedDevices = new Set(
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[2]),
  );
  for (const name of readdirSync('/sys/block').filter((entry) => entry.startsWith('loop'))) {
    let backing: string;
    try {
      backing = readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
    } catch {
      continue; // not attached
    }
    if (!backing.startsWith(`${store.root}/`)) continue;
    const device = readFileSync(`/sys/block/${name}/dev`, 'utf8').trim();
    if (mountedDevices.has(device) || readdirSync(`/sys/block/${name}/holders`).length > 0) continue;
    await report('leaked-loop', `/dev/${name}`, `attached to ${backing}, and nothing uses it`, () => detachLoop(`/dev/${name}`));
  }
}

/** devicemapper: thin ids no layer or container owns, and active devices without a thin id. */
async function checkDeviceMapper(store: Store, report: Report): Promise<void> {
  const { db, driver } = store;
  const keys = transaction(db, () => ({
    ids: db.prepare("SELECT key FROM dm_devices WHERE key != 'base'").pluck().all() as string[],
    owners: new Set([
      ...(db.prepare('SELECT cache_id FROM layers UNION SELECT cache_id FROM containers').pluck().all() as string[]),
      ...stagedRows(db).map((row) => basename(row.path)),
    ]),
  }));
  for (const key of keys.ids.filter((id) => !keys.owners.has(id))) {
    await report('leaked-device', key, 'a thin device no layer or container owns', () => driver.removePath(driver.layerPath(key)));
  }
  if (!(driver instanceof DevicemapperDriver)) return;
  for (const name of await driver.strayDevices()) {
    await report('leaked-device', name, 'an active device of the pool with no thin id in the metadata', () => driver.removeStrayDevice(name));
  }
}
