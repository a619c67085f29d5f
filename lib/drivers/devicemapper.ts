// devicemapper: Docker's retired driver on dm-thin. A thin pool (on loop
// devices over sparse files, or on block devices the user names) holds a base
// thin device with a filesystem; each layer is a thin snapshot of its parent
// (the base for a first layer), each container a snapshot of its layer. Every
// device is mounted at <root>/devicemapper/mnt/<id> while the store is open,
// its files in the rootfs/ directory there; a container's root filesystem is
// a bind mount of that directory.
//
// Thin ids come from the store's metadata (ThinIdRegistry): an id is
// committed there before its thin device is made and forgotten after the
// device is deleted, so the pool never holds an id the metadata lacks.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

import type { Change } from '../archive/changes.js';
import { treeChanges } from '../archive/tree-changes.js';
import { dmVersion, listDevices } from '../native/dm.js';
import { mount, unmount } from '../native/mount.js';
import { StoreError } from '../store/errors.js';
import { isMountPoint, mountsBelow } from '../system/mountinfo.js';
import type { DriverStatus, MountSpec, StorageDriver, WritableLayout, WritableOptions } from './driver.js';
import { BLOCK_SECTORS, MAX_THIN_ID, removeDeviceRetrying, retryBusy, SECTOR, ThinPool, type PoolBacking } from './dm/pool.js';
import { refuseSizeLimit } from './size-limit.js';

// Promisified when called: the CLI loads child_process only for a command that runs one.
const run = (file: string, args: readonly string[]) => promisify(execFile)(file, args);

/** The store's record of thin ids, kept in its metadata database (the driver never opens it). */
export interface ThinIdRegistry {
  /** Reserves the lowest free thin id for `key` and commits it before the device exists. */
  reserve(key: string): number;
  lookup(key: string): number | undefined;
  /** Every reserved id by key. */
  entries(): Map<string, number>;
  /** Forgets `key` once its thin device is deleted. */
  release(key: string): void;
}

/** The options devicemapper takes (as docker's --storage-opt dm.*). */
export const DEVICEMAPPER_OPTIONS = ['dm.datadev', 'dm.metadatadev', 'dm.loopdatasize', 'dm.loopmetadatasize', 'dm.basesize', 'dm.fs'];

/** What a pool was made with; kept in <root>/devicemapper/config.json, as it cannot change later. */
interface PoolConfig {
  pool: string;
  backing: PoolBacking;
  fs: 'ext4' | 'xfs';
  baseSize: number;
  /** Set once the base device has its filesystem: a base without it is remade. */
  baseReady: boolean;
}

const BASE = 'base';

/** "10G", "512M", "1073741824": bytes. */
function parseSize(option: string, text: string): number {
  const match = /^(\d+)\s*([kmgt]?)i?b?$/i.exec(text.trim());
  if (!match) throw new StoreError('ERR_DRIVER_UNSUPPORTED', `devicemapper: ${option}=${text} is not a size (like 10G or 512M)`);
  return Number(match[1]) * 1024 ** ' kmgt'.indexOf((match[2] || ' ').toLowerCase());
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  for (; value >= 1024 && unit < units.length - 1; unit++) value /= 1024;
  return `${unit === 0 ? value : value.toFixed(1).replace(/\.0$/, '')} ${units[unit]}`;
}

export class DevicemapperDriver implements StorageDriver {
  readonly name = 'devicemapper';
  readonly whiteouts = 'remove' as const;
  readonly home: string;
  private config!: PoolConfig;
  private pool!: ThinPool;
  /** Device names start with this: one store's devices, apart from others on the host. */
  private readonly prefix: string;

  constructor(
    root: string,
    private readonly ids: ThinIdRegistry,
    private readonly options: Readonly<Record<string, string>> = {},
  ) {
    this.home = join(root, 'devicemapper');
    this.prefix = `strata-${createHash('sha256').update(this.home).digest('hex').slice(0, 12)}`;
  }

  async init(): Promise<DriverStatus> {
    try {
      await dmVersion();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new StoreError(
        'ERR_DRIVER_UNSUPPORTED',
        code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO'
          ? 'devicemapper: needs device-mapper (not in this kernel; run the VM suite)'
          : `devicemapper: cannot use device-mapper: ${(error as Error).message}`,
      );
    }
    const fresh = !existsSync(this.configFile);
    this.config = fresh ? this.newConfig() : this.storedConfig();
    this.pool = new ThinPool(this.config.pool, this.config.backing, join(this.home, 'pool.lock'));
    await mkdir(join(this.home, 'mnt'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.home, 'rootfs'), { recursive: true, mode: 0o700 });
    const backing = this.config.backing;
    if (backing.mode === 'loop') await mkdir(dirname(backing.dataFile), { recursive: true, mode: 0o700 });
    await this.pool.activate(fresh);
    if (fresh) writeFileSync(this.configFile, JSON.stringify(this.config, null, 2));
    await this.pool.locked(() => this.ensureBase());
    const strays = await this.pool.locked(() => this.deleteStrays());
    const missing = await this.activateAll();
    return this.status(strays, missing);
  }

  private get configFile(): string {
    return join(this.home, 'config.json');
  }

  private newConfig(): PoolConfig {
    const unknown = Object.keys(this.options).filter((key) => !DEVICEMAPPER_OPTIONS.includes(key));
    if (unknown.length > 0) {
      throw new StoreError('ERR_DRIVER_UNSUPPORTED', `devicemapper: unknown option ${unknown.join(', ')} (use ${DEVICEMAPPER_OPTIONS.join(', ')})`);
    }
    const o = this.options;
    const fs = o['dm.fs'] ?? 'ext4';
    if (fs !== 'ext4' && fs !== 'xfs') throw new StoreError('ERR_DRIVER_UNSUPPORTED', `devicemapper: dm.fs=${fs}: use ext4 or xfs`);
    const data = o['dm.datadev'];
    const metadata = o['dm.metadatadev'];
    if ((data === undefined) !== (metadata === undefined)) {
      throw new StoreError('ERR_DRIVER_UNSUPPORTED', 'devicemapper: dm.datadev and dm.metadatadev go together');
    }
    const loopDir = join(this.home, 'devicemapper');
    const backing: PoolBacking =
      data !== undefined && metadata !== undefined
        ? { mode: 'direct', dataDevice: data, metadataDevice: metadata }
        : {
            mode: 'loop',
            dataFile: join(loopDir, 'data'),
            metadataFile: join(loopDir, 'metadata'),
            dataSize: parseSize('dm.loopdatasize', o['dm.loopdatasize'] ?? '100G'),
            metadataSize: parseSize('dm.loopmetadatasize', o['dm.loopmetadatasize'] ?? '2G'),
          };
    return { pool: `${this.prefix}-pool`, backing, fs, baseSize: parseSize('dm.basesize', o['dm.basesize'] ?? '10G'), baseReady: false };
  }

  private storedConfig(): PoolConfig {
    const config = JSON.parse(readFileSync(this.configFile, 'utf8')) as PoolConfig;
    const fixed: Record<string, string | undefined> = {
      'dm.fs': config.fs,
      'dm.datadev': config.backing.mode === 'direct' ? config.backing.dataDevice : undefined,
      'dm.metadatadev': config.backing.mode === 'direct' ? config.backing.metadataDevice : undefined,
    };
    for (const [key, value] of Object.entries(this.options)) {
      if (key in fixed && fixed[key] !== value) {
        throw new StoreError('ERR_DRIVER_UNSUPPORTED', `devicemapper: the pool was made with ${key}=${fixed[key] ?? '(none)'}; it cannot change to ${value}`);
      }
    }
    return config;
  }

  private deviceName(key: string): string {
    return `${this.prefix}-${key}`;
  }

  /**
   * The base thin device with an empty filesystem, made once (again if a
   * crash left it half-made); under the pool's lock, so the config is read
   * again: another process may have made it meanwhile.
   */
  private async ensureBase(): Promise<void> {
    this.config = this.storedConfig();
    if (this.config.baseReady) return;
    const stale = this.ids.lookup(BASE);
    if (stale !== undefined) {
      await this.deactivate(BASE);
      await this.pool.deleteThin(stale);
      this.ids.release(BASE);
    }
    const id = this.ids.reserve(BASE);
    await this.pool.createThin(id);
    const device = await this.pool.activateThin(this.deviceName(BASE), id, this.config.baseSize);
    try {
      const mkfs =
        this.config.fs === 'xfs'
          ? run('mkfs.xfs', ['-q', '-f', '-K', device])
          : run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', device]);
      await mkfs.catch((error: Error & { stderr?: string }) => {
        throw new StoreError('ERR_DRIVER_UNSUPPORTED', `devicemapper: mkfs.${this.config.fs} failed: ${error.stderr?.trim() || error.message}`);
      });
      const dir = this.mountPoint(BASE);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await this.mountDevice(BASE);
      try {
        await mkdir(join(dir, 'rootfs'), { mode: 0o755 });
      } finally {
        await unmount(dir);
      }
      await rm(dir, { recursive: true, force: true });
    } finally {
      await this.deactivate(BASE);
    }
    this.config.baseReady = true;
    writeFileSync(this.configFile, JSON.stringify(this.config, null, 2));
  }

  /** Deletes thin ids the pool holds but the metadata does not (below the pool's high-water mark). */
  private async deleteStrays(): Promise<number[]> {
    const known = new Set(this.ids.entries().values());
    const { transactionId } = await this.pool.status();
    const deleted: number[] = [];
    for (let id = 0; id < Math.min(transactionId, MAX_THIN_ID + 1); id++) {
      if (!known.has(id) && (await this.pool.deleteThin(id))) deleted.push(id);
    }
    return deleted;
  }

  /** Activates and mounts every layer and container device; returns the keys whose thin device the pool lacks. */
  private async activateAll(): Promise<string[]> {
    const missing: string[] = [];
    for (const [key, id] of this.ids.entries()) {
      if (key === BASE) continue;
      try {
        await this.pool.activateThin(this.deviceName(key), id, this.config.baseSize);
      } catch (error) {
        // A thin table naming an id the pool does not have is refused.
        if ((error as NodeJS.ErrnoException).code !== 'ENODATA' && (error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        missing.push(key);
        continue;
      }
      await mkdir(this.mountPoint(key), { recursive: true, mode: 0o700 });
      await this.mountDevice(key);
    }
    return missing;
  }

  private async status(strays: number[], missing: string[]): Promise<DriverStatus> {
    const pool = await this.pool.status();
    const backing = this.config.backing;
    const status: DriverStatus = [
      ['Pool Name', this.config.pool],
      ['Pool Blocksize', formatBytes(BLOCK_SECTORS * SECTOR)],
      ['Base Device Size', formatBytes(this.config.baseSize)],
      ['Backing Filesystem', this.config.fs],
      ...(backing.mode === 'loop'
        ? ([
            ['Data file', backing.dataFile],
            ['Metadata file', backing.metadataFile],
          ] as DriverStatus)
        : ([
            ['Data device', backing.dataDevice],
            ['Metadata device', backing.metadataDevice],
          ] as DriverStatus)),
      ['Data Space Used', formatBytes(pool.dataUsed)],
      ['Data Space Total', formatBytes(pool.dataTotal)],
      ['Data Space Available', formatBytes(pool.dataTotal - pool.dataUsed)],
      ['Metadata Space Used', formatBytes(pool.metadataUsed)],
      ['Metadata Space Total', formatBytes(pool.metadataTotal)],
      ['Metadata Space Available', formatBytes(pool.metadataTotal - pool.metadataUsed)],
      ['Thin Pool Status', pool.mode + (pool.needsCheck ? ', needs_check' : '')],
      ['Thin Devices', String(this.ids.entries().size)],
    ];
    if (backing.mode === 'loop') {
      status.push(['Mode', 'loop-lvm: loop devices on sparse files, meant for testing only; name block devices with dm.datadev and dm.metadatadev']);
    }
    if (strays.length > 0) status.push(['Deleted Stray Thin Ids', strays.join(', ')]);
    if (missing.length > 0) status.push(['Metadata Without Thin Devices', missing.join(', ')]);
    return status;
  }

  /** Where the device of a layer or container is mounted. */
  private mountPoint(key: string): string {
    return join(this.home, 'mnt', key);
  }

  private async mountDevice(key: string): Promise<void> {
    const dir = this.mountPoint(key);
    if (isMountPoint(dir)) return;
    // Every snapshot has the base's filesystem UUID: xfs refuses a second mount of one without nouuid.
    await mount(dir, { source: `/dev/mapper/${this.deviceName(key)}`, fstype: this.config.fs, data: this.config.fs === 'xfs' ? 'nouuid' : '' });
  }

  /** Unmounts (if mounted) and removes the device of `key`, retrying while busy. */
  private async deactivate(key: string): Promise<void> {
    const dir = this.mountPoint(key);
    if (isMountPoint(dir)) await retryBusy(`the mount ${dir}`, () => unmount(dir));
    const name = this.deviceName(key);
    if ((await listDevices()).some((d) => d.name === name)) await removeDeviceRetrying(name);
  }

  /** A new thin snapshot of `origin` for `key`, active and mounted. */
  private async snapshot(key: string, origin: string): Promise<void> {
    const originId = this.ids.lookup(origin);
    if (originId === undefined) throw new StoreError('ERR_LAYER_UNKNOWN', `devicemapper: no thin device for ${origin}`);
    await this.pool.requireSpace();
    const id = this.ids.reserve(key);
    await this.pool.createSnapshot(id, originId, this.deviceName(origin));
    await this.pool.activateThin(this.deviceName(key), id, this.config.baseSize);
    await mkdir(this.mountPoint(key), { recursive: true, mode: 0o700 });
    await this.mountDevice(key);
  }

  /** A write into a thin device of a full pool fails with EIO (error_if_no_space): the pool's state is the reason. */
  async explainFailure(error: unknown): Promise<unknown> {
    try {
      await this.pool.requireSpace();
      return error;
    } catch (full) {
      if (full instanceof Error) full.cause = error;
      return full;
    }
  }

  layerPath(cacheId: string): string {
    return this.mountPoint(cacheId);
  }

  layerDir(cacheId: string): string {
    return join(this.mountPoint(cacheId), 'rootfs');
  }

  async createLayer(cacheId: string, parentCacheId: string | null): Promise<string> {
    await this.snapshot(cacheId, parentCacheId ?? BASE);
    return this.layerDir(cacheId);
  }

  /** Unmounts, deactivates and deletes the thin device of a layer or container, whatever state it was left in. */
  async removePath(path: string): Promise<void> {
    const key = basename(path);
    const rootfs = join(this.home, 'rootfs', key);
    if (isMountPoint(rootfs)) await retryBusy(`the mount ${rootfs}`, () => unmount(rootfs));
    await this.deactivate(key);
    const id = this.ids.lookup(key);
    if (id !== undefined) {
      await this.pool.deleteThin(id);
      this.ids.release(key);
    }
    await rm(path, { recursive: true, force: true });
    await rm(rootfs, { recursive: true, force: true });
  }

  writable(cacheId: string): WritableLayout {
    return { upper: this.layerDir(cacheId), merged: join(this.home, 'rootfs', cacheId) };
  }

  async createWritable(cacheId: string, layerCacheId: string, options: WritableOptions): Promise<void> {
    if (options.sizeLimit !== undefined) refuseSizeLimit(this.name);
    await this.snapshot(cacheId, layerCacheId);
    await mkdir(this.writable(cacheId).merged, { recursive: true, mode: 0o700 });
  }

  rootfsMount(cacheId: string, _chain: readonly string[], options: WritableOptions): MountSpec {
    return { type: 'bind', source: this.writable(cacheId).upper, readOnly: options.readOnly ?? false };
  }

  viewMount(): null {
    return null;
  }

  async adoptable(): Promise<boolean> {
    return true;
  }

  /** The new layer is a thin snapshot of the container's device: no data copied. */
  async adoptWritable(cacheId: string, layerCacheId: string): Promise<null> {
    await this.snapshot(layerCacheId, cacheId);
    return null;
  }

  changes(_cacheId: string, chain: readonly string[], view: string): Promise<Change[]> {
    return treeChanges(view, chain[0] === undefined ? null : this.layerDir(chain[0]));
  }

  /** Active thin devices of this store whose key has no thin id in the metadata (left by a crash); fsck's to report. */
  async strayDevices(): Promise<string[]> {
    const keys = new Set(this.ids.entries().keys());
    return (await listDevices())
      .map((device) => device.name)
      .filter((name) => name.startsWith(`${this.prefix}-`) && name !== this.config.pool && !keys.has(name.slice(this.prefix.length + 1)));
  }

  /** Unmounts and removes a stray device (see strayDevices). */
  async removeStrayDevice(name: string): Promise<void> {
    await this.deactivate(name.slice(this.prefix.length + 1));
  }

  /**
   * Releases what the store holds in the kernel: unmounts everything below
   * the driver's directory, removes its thin devices and the pool, detaches
   * the loop devices. The data stays; the next open activates it again.
   */
  async release(): Promise<void> {
    for (const point of mountsBelow(this.home).reverse()) await retryBusy(`the mount ${point}`, () => unmount(point));
    for (const device of await listDevices()) {
      if (device.name.startsWith(`${this.prefix}-`) && device.name !== this.config.pool) await removeDeviceRetrying(device.name);
    }
    await this.pool.deactivate();
  }
}
