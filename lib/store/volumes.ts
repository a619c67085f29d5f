// Volumes, as Docker's local driver keeps them: data in volumes/<name>/_data,
// which survives every container that uses it. A volume with driver options
// (type, device, o) has that filesystem mounted on _data while in use.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { attachLoop } from '../native/loop.js';
import { mount, unmount, type MountFlag } from '../native/mount.js';
import { checkBindSource } from '../mounts/safety.js';
import { MountSpecError, validateVolumeName } from '../mounts/spec.js';
import { directorySize } from '../system/directory-size.js';
import { isMountPoint } from '../system/mountinfo.js';
import { transaction, type Db } from './database.js';
import { StoreError } from './errors.js';
import { beginStaging, discardStaged, endStaging } from './staging.js';

/** The label Docker puts on volumes it names itself. */
export const ANONYMOUS_LABEL = 'com.docker.volume.anonymous';

export interface Volume {
  name: string;
  driver: 'local';
  labels: Record<string, string>;
  /** The local driver's options: type, device, o. */
  options: Record<string, string>;
  anonymous: boolean;
  /** In multi-tenant use, the tenant the volume belongs to; null: shared. */
  owner: string | null;
  /** Users of a volume whose options are mounted on its data directory. */
  active: number;
  created: string;
  /** Where its data is: volumes/<name>/_data. */
  mountpoint: string;
}

export interface VolumeCreateOptions {
  labels?: Record<string, string>;
  options?: Record<string, string>;
  owner?: string;
  /** Allow a bind (o=bind) of a sensitive host path. */
  allowSensitiveBinds?: boolean;
}

export interface VolumeFilters {
  /** true: volumes no container uses; false: volumes in use. */
  dangling?: boolean;
  /** Substrings of the name; any may match. */
  name?: string[];
  /** "key" or "key=value"; all must match. */
  label?: string[];
  /** "key" or "key=value"; none may match (prune's label!=). */
  labelNot?: string[];
  driver?: string[];
}

export interface PruneResult {
  deleted: string[];
  /** Bytes in the removed volumes' data, measured before each removal. */
  spaceReclaimed: number;
}

interface VolumeRow {
  name: string;
  driver: 'local';
  labels: string;
  options: string;
  anonymous: number;
  owner: string | null;
  active: number;
  created: string;
}

const VALID_OPTIONS = ['type', 'o', 'device', 'size'];

/** mount(8) words in `o` that are flags of mount(2); the rest is the filesystem's data string. */
const FLAG_WORDS: Record<string, MountFlag[]> = {
  ro: ['rdonly'], bind: ['bind'], rbind: ['bind', 'rec'], nosuid: ['nosuid'], nodev: ['nodev'], noexec: ['noexec'],
  sync: ['synchronous'], dirsync: ['dirsync'], noatime: ['noatime'], nodiratime: ['nodiratime'], relatime: ['relatime'],
  strictatime: ['strictatime'], rw: [], suid: [], dev: [], exec: [], async: [], defaults: [],
};

function isBindOption(o: string | undefined): boolean {
  return (o ?? '').split(',').some((word) => word === 'bind' || word === 'rbind');
}

/** Whether labels match a filter: "key" (present) or "key=value". */
export const labelMatches = (labels: Record<string, string>, filter: string) => {
  const eq = filter.indexOf('=');
  return eq < 0 ? filter in labels : labels[filter.slice(0, eq)] === filter.slice(eq + 1);
};

export class VolumeStore {
  readonly dir: string;

  constructor(
    private readonly db: Db,
    /** The store root: bind options may not expose it. */
    readonly storeRoot: string,
  ) {
    this.dir = join(storeRoot, 'volumes');
  }

  private toVolume(row: VolumeRow): Volume {
    return {
      name: row.name,
      driver: row.driver,
      labels: JSON.parse(row.labels) as Record<string, string>,
      options: JSON.parse(row.options) as Record<string, string>,
      anonymous: row.anonymous === 1,
      owner: row.owner,
      active: row.active,
      created: row.created,
      mountpoint: join(this.dir, row.name, '_data'),
    };
  }

  /**
   * Creates a volume, named or (without a name) anonymous with 64 hex
   * characters. As Docker's, creating a name that exists returns that volume.
   */
  async create(name?: string, options: VolumeCreateOptions = {}): Promise<Volume> {
    const anonymous = name === undefined;
    const volumeName = name ?? randomBytes(32).toString('hex');
    try {
      validateVolumeName(volumeName);
    } catch (error) {
      throw new StoreError('ERR_INVALID_NAME', (error as Error).message);
    }
    const driverOptions = options.options ?? {};
    this.validateOptions(driverOptions, options.allowSensitiveBinds ?? false);
    const owner = options.owner ?? null;
    const existing = this.get(volumeName);
    if (existing) {
      this.checkOwner(existing, owner);
      return existing;
    }
    const labels = { ...options.labels, ...(anonymous && { [ANONYMOUS_LABEL]: '' }) };
    const path = join(this.dir, volumeName);
    transaction(this.db, () => {
      if (this.get(volumeName)) throw new StoreError('ERR_NAME_IN_USE', `volume ${volumeName} is being created by another process`);
      beginStaging(this.db, path);
    });
    try {
      // As Docker's: the volume dir is 0701, its data dir 0755 (the container's root must reach it).
      mkdirSync(path, { mode: 0o701 });
      mkdirSync(join(path, '_data'), { mode: 0o755 });
      if (Object.keys(driverOptions).length > 0) writeFileSync(join(path, 'opts.json'), JSON.stringify(driverOptions));
      transaction(this.db, () => {
        this.db
          .prepare('INSERT INTO volumes (name, driver, labels, options, anonymous, owner, created) VALUES (?, ?, ?, ?, ?, ?, ?)')
          .run(volumeName, 'local', JSON.stringify(labels), JSON.stringify(driverOptions), anonymous ? 1 : 0, owner, new Date().toISOString());
        endStaging(this.db, path);
      });
    } catch (error) {
      await discardStaged(this.db, path);
      throw error;
    }
    return this.get(volumeName)!;
  }

  /** The local driver's option rules, with Docker's messages, and what this host can check up front. */
  private validateOptions(options: Record<string, string>, allowSensitive: boolean): void {
    const fail = (message: string) => new StoreError('ERR_VOLUME_OPTIONS', message);
    for (const key of Object.keys(options)) {
      if (!VALID_OPTIONS.includes(key)) throw fail(`invalid option: ${JSON.stringify(key)}`);
    }
    if ('size' in options) throw fail('quota size requested but no quota support');
    if ('device' in options && !('type' in options)) throw fail('missing required option: "type"');
    if ('type' in options && !('device' in options)) throw fail('missing required option: "device"');
    if ('o' in options && !('type' in options)) throw fail('missing required option: "type"');
    const { type, device, o } = options;
    if (type === undefined || device === undefined) return;
    if (isBindOption(o)) {
      if (!device.startsWith('/') || !existsSync(device) || !statSync(device).isDirectory()) {
        throw fail(`bind source path does not exist or is not a directory: ${device}`);
      }
      try {
        checkBindSource(device, this.storeRoot, allowSensitive);
      } catch (error) {
        throw fail((error as MountSpecError).message);
      }
    } else if (type !== 'tmpfs' && device.startsWith('/') && !existsSync(device)) {
      throw fail(`device ${device} does not exist`);
    }
  }

  private checkOwner(volume: Volume, owner: string | null): void {
    if (volume.owner !== null && volume.owner !== owner) {
      throw new StoreError('ERR_VOLUME_OWNER', `volume ${volume.name} belongs to another owner`);
    }
  }

  /** Throws unless a container of `owner` may use the volume (one without an owner is shared). */
  checkAccess(name: string, owner: string | null): Volume {
    const volume = this.resolve(name);
    this.checkOwner(volume, owner);
    return volume;
  }

  get(name: string): Volume | undefined {
    const row = this.db.prepare('SELECT * FROM volumes WHERE name = ?').get(name) as VolumeRow | undefined;
    return row && this.toVolume(row);
  }

  resolve(name: string): Volume {
    const volume = this.get(name);
    if (!volume) throw new StoreError('ERR_VOLUME_UNKNOWN', `get ${name}: no such volume`);
    return volume;
  }

  /** The ids of the containers whose mounts use the volume. */
  users(name: string): string[] {
    return (this.db.prepare('SELECT DISTINCT container FROM container_mounts WHERE volume = ? ORDER BY container').all(name) as Array<{ container: string }>)
      .map((row) => row.container);
  }

  list(filters: VolumeFilters = {}): Volume[] {
    const rows = this.db.prepare('SELECT * FROM volumes ORDER BY name').all() as VolumeRow[];
    return rows.map((row) => this.toVolume(row)).filter((volume) => {
      if (filters.dangling !== undefined && (this.users(volume.name).length === 0) !== filters.dangling) return false;
      if (filters.name?.length && !filters.name.some((part) => volume.name.includes(part))) return false;
      if (filters.driver?.length && !filters.driver.includes(volume.driver)) return false;
      if (filters.label && !filters.label.every((label) => labelMatches(volume.labels, label))) return false;
      if (filters.labelNot && filters.labelNot.some((label) => labelMatches(volume.labels, label))) return false;
      return true;
    });
  }

  /** Bytes of file content under the data directory, hard links counted once (Docker's directory.Size). */
  size(name: string): number {
    return directorySize(this.resolve(name).mountpoint);
  }

  /**
   * Removes a volume. One that a container uses is refused, naming the
   * containers, with or without `force` (as in Docker since moby#31446);
   * `force` makes an unknown volume no error and drops the metadata even if
   * the data cannot be removed.
   */
  async remove(name: string, options: { force?: boolean } = {}): Promise<void> {
    const volume = this.get(name);
    if (!volume) {
      if (options.force) return;
      throw new StoreError('ERR_VOLUME_UNKNOWN', `get ${name}: no such volume`);
    }
    const refuseInUse = () => {
      const users = this.users(volume.name);
      if (users.length > 0) {
        throw new StoreError('ERR_VOLUME_IN_USE', `remove ${volume.name}: volume is in use - [${users.join(', ')}]`);
      }
    };
    refuseInUse();
    // Unmount first: the data directory is deleted recursively, and a mounted
    // bind or device would take the host's files with it.
    if (isMountPoint(volume.mountpoint)) await unmount(volume.mountpoint, options.force ? ['detach'] : []);
    const path = join(this.dir, volume.name);
    transaction(this.db, () => {
      refuseInUse();
      if (this.db.prepare('DELETE FROM volumes WHERE name = ?').run(volume.name).changes === 0) {
        throw new StoreError('ERR_VOLUME_UNKNOWN', `remove ${volume.name}: removed by another process`);
      }
      beginStaging(this.db, path);
    });
    try {
      await discardStaged(this.db, path);
    } catch (error) {
      // Without force the staging row stays, and the next open retries the removal.
      if (!options.force) throw error;
      endStaging(this.db, path);
    }
  }

  /**
   * Removes unused volumes without driver options (as Docker's prune): the
   * anonymous ones, or with `all` the named ones too, matching the label filters.
   */
  async prune(options: { all?: boolean; label?: string[]; labelNot?: string[] } = {}): Promise<PruneResult> {
    const candidates = this.list({
      dangling: true,
      label: [...(options.all ? [] : [ANONYMOUS_LABEL]), ...(options.label ?? [])],
      ...(options.labelNot && { labelNot: options.labelNot }),
    }).filter((volume) => Object.keys(volume.options).length === 0);
    const result: PruneResult = { deleted: [], spaceReclaimed: 0 };
    for (const volume of candidates) {
      const size = this.size(volume.name);
      try {
        await this.remove(volume.name);
      } catch (error) {
        // A container started using it since the listing: it is no longer unused.
        if ((error as StoreError).code === 'ERR_VOLUME_IN_USE') continue;
        throw error;
      }
      result.deleted.push(volume.name);
      result.spaceReclaimed += size;
    }
    return result;
  }

  /** Makes the volume's data ready for a user: mounts its options on the first use. */
  async acquire(name: string): Promise<Volume> {
    const volume = this.resolve(name);
    if (Object.keys(volume.options).length === 0) return volume;
    if (!isMountPoint(volume.mountpoint)) await this.mountOptions(volume);
    transaction(this.db, () => this.db.prepare('UPDATE volumes SET active = active + 1 WHERE name = ?').run(volume.name));
    return volume;
  }

  /** Drops one use; the last unmounts the volume's options. */
  async release(name: string): Promise<void> {
    const volume = this.get(name);
    if (!volume || Object.keys(volume.options).length === 0) return;
    const remaining = transaction(this.db, () => {
      this.db.prepare('UPDATE volumes SET active = max(active - 1, 0) WHERE name = ?').run(volume.name);
      return this.get(volume.name)!.active;
    });
    if (remaining === 0 && isMountPoint(volume.mountpoint)) await unmount(volume.mountpoint);
  }

  private async mountOptions(volume: Volume): Promise<void> {
    const { type = '', device = '', o = '' } = volume.options;
    const flags: MountFlag[] = [];
    const data: string[] = [];
    for (const word of o.split(',').filter(Boolean)) {
      const known = FLAG_WORDS[word];
      if (known) flags.push(...known);
      else data.push(word);
    }
    const fstype = type === 'none' ? '' : type;
    // A filesystem image in a regular file goes through a loop device, which
    // autoclear detaches when the mount (its last holder) goes.
    if (!flags.includes('bind') && device.startsWith('/') && existsSync(device) && statSync(device).isFile()) {
      await using loop = await attachLoop(device, { autoclear: true, ...(flags.includes('rdonly') && { readOnly: true }) });
      await mount(volume.mountpoint, { source: loop.device, fstype, flags, data: data.join(',') });
      return;
    }
    await mount(volume.mountpoint, { source: device, fstype, flags, data: data.join(',') });
  }

  /**
   * Repairs use counts after an unclean shutdown: a volume's options are in
   * use by the containers whose root filesystem is still mounted.
   */
  async recover(mountedContainers: ReadonlySet<string>): Promise<string[]> {
    const repaired: string[] = [];
    for (const volume of this.list()) {
      if (Object.keys(volume.options).length === 0) continue;
      const users = this.users(volume.name).filter((id) => mountedContainers.has(id)).length;
      const mounted = isMountPoint(volume.mountpoint);
      if (mounted && users === 0) {
        await unmount(volume.mountpoint, ['detach']);
        repaired.push(`volume ${volume.name}: unmounted its options, left mounted with no user`);
      }
      const active = mounted && users > 0 ? users : 0;
      if (active !== volume.active) {
        this.db.prepare('UPDATE volumes SET active = ? WHERE name = ?').run(active, volume.name);
        repaired.push(`volume ${volume.name}: reset a stale use count (${volume.active} to ${active})`);
      }
    }
    return repaired;
  }
}
