// A dm-thin pool and its thin devices, through the device-mapper ioctls of
// lib/native/dm.ts (no dmsetup, no udev: createDevice makes the nodes).
import { closeSync, existsSync, openSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';

import {
  createDevice,
  deviceStatus,
  listDevices,
  loadTable,
  removeDevice,
  resumeDevice,
  suspendDevice,
  targetMessage,
  targetStatus,
} from '../../native/dm.js';
import { attachLoop, detachLoop, listLoops } from '../../native/loop.js';
import { StoreError } from '../../store/errors.js';
import { withLockFile } from './lock.js';

export const SECTOR = 512;
/** Docker's default pool block: 128 sectors, 64 KiB. */
export const BLOCK_SECTORS = 128;
const METADATA_BLOCK = 4096;
/** Thin device ids are 24-bit. */
export const MAX_THIN_ID = (1 << 24) - 1;

/** Where the pool's data and metadata live. */
export type PoolBacking =
  | { mode: 'loop'; dataFile: string; metadataFile: string; dataSize: number; metadataSize: number }
  | { mode: 'direct'; dataDevice: string; metadataDevice: string };

/** The thin-pool status line, parsed (Documentation/admin-guide/device-mapper/thin-provisioning.rst). */
export interface PoolStatus {
  transactionId: number;
  metadataUsed: number;
  metadataTotal: number;
  dataUsed: number;
  dataTotal: number;
  /** rw, ro, out_of_data_space, or Fail. */
  mode: string;
  needsCheck: boolean;
}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/** The size of a block device in bytes, from sysfs by its device number. */
export function blockDeviceSize(device: string): number {
  const rdev = statSync(device).rdev;
  const sectors = readFileSync(`/sys/dev/block/${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}/size`, 'utf8');
  return Number(sectors.trim()) * SECTOR;
}

/** Runs `fn` again while it fails with EBUSY (a device or mount a closing process still holds), then names the device. */
export async function retryBusy<T>(what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (errorCode(error) !== 'EBUSY') throw error;
      if (attempt === 10) throw new StoreError('ERR_DRIVER_BUSY', `devicemapper: ${what} stays busy (in use by a process or a mount)`);
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    }
  }
}

export async function deviceExists(name: string): Promise<boolean> {
  return (await listDevices()).some((d) => d.name === name);
}

/** Removes a device-mapper device, retrying while it is busy. */
export async function removeDeviceRetrying(name: string): Promise<void> {
  await retryBusy(`device ${name}`, () => removeDevice(name));
}

export class ThinPool {
  /** "major:minor" of the pool device, as thin tables name it. */
  private poolDevice = '';

  constructor(
    readonly name: string,
    readonly backing: PoolBacking,
    /** The lock file of `locked`. */
    private readonly lockFile: string,
  ) {}

  /**
   * Makes the pool live: creates the loop files and attaches them (loop
   * mode), then loads the thin-pool table. A pool another process left
   * active is used as it is.
   */
  async activate(fresh: boolean): Promise<void> {
    if (!(await deviceExists(this.name))) {
      const [metadata, data] = await this.backingDevices(fresh);
      const dataSectors = Math.floor(blockDeviceSize(data) / SECTOR / BLOCK_SECTORS) * BLOCK_SECTORS;
      // Low-water mark: Docker's 32768 blocks, less on a small pool. Block
      // zeroing skipped: every device has a filesystem that tracks what it
      // wrote. error_if_no_space: a full pool fails writes at once instead
      // of queueing them for a minute, so the layer being written fails.
      const lowWater = Math.min(32768, Math.floor(dataSectors / BLOCK_SECTORS / 8));
      const params = `${metadata} ${data} ${BLOCK_SECTORS} ${lowWater} 2 skip_block_zeroing error_if_no_space`;
      await createDevice(this.name);
      try {
        await loadTable(this.name, [{ start: 0, length: dataSectors, type: 'thin-pool', params }]);
        await resumeDevice(this.name);
      } catch (error) {
        await removeDevice(this.name).catch(() => {});
        throw error;
      }
    }
    const { major, minor } = await deviceStatus(this.name);
    this.poolDevice = `${major}:${minor}`;
  }

  /** The metadata and data block devices, attaching loop devices to the files first in loop mode. */
  private async backingDevices(fresh: boolean): Promise<[string, string]> {
    const backing = this.backing;
    if (backing.mode === 'direct') {
      // A new pool formats its metadata device only when its superblock is zero.
      if (fresh) zeroStart(backing.metadataDevice);
      return [backing.metadataDevice, backing.dataDevice];
    }
    const loops = await listLoops();
    const attach = async (file: string, size: number): Promise<string> => {
      if (!existsSync(file)) {
        writeFileSync(file, '', { mode: 0o600 });
        truncateSync(file, size);
      }
      const attached = loops.find((l) => l.backingFile === file);
      if (attached) return `/dev/loop${attached.number}`;
      const loop = await attachLoop(file);
      // The pool holds the device open; this handle is not needed once it does.
      await loop.close();
      return loop.device;
    };
    return [await attach(backing.metadataFile, backing.metadataSize), await attach(backing.dataFile, backing.dataSize)];
  }

  /** Removes the pool device and, in loop mode, detaches its loop devices. Thin devices must be gone. */
  async deactivate(): Promise<void> {
    if (await deviceExists(this.name)) await removeDeviceRetrying(this.name);
    if (this.backing.mode !== 'loop') return;
    const files = [this.backing.dataFile, this.backing.metadataFile];
    for (const loop of await listLoops()) {
      if (files.includes(loop.backingFile)) await detachLoop(loop.number).catch((e: unknown) => (errorCode(e) === 'ENXIO' ? undefined : Promise.reject(e)));
    }
  }

  async status(): Promise<PoolStatus> {
    const line = (await targetStatus(this.name))[0]?.status ?? '';
    const [transaction, metadata, data, , mode, , , needsCheck] = line.split(' ');
    const [metadataUsed, metadataTotal] = (metadata ?? '0/0').split('/').map(Number);
    const [dataUsed, dataTotal] = (data ?? '0/0').split('/').map(Number);
    return {
      transactionId: Number(transaction),
      metadataUsed: (metadataUsed ?? 0) * METADATA_BLOCK,
      metadataTotal: (metadataTotal ?? 0) * METADATA_BLOCK,
      dataUsed: (dataUsed ?? 0) * BLOCK_SECTORS * SECTOR,
      dataTotal: (dataTotal ?? 0) * BLOCK_SECTORS * SECTOR,
      mode: mode ?? 'Fail',
      needsCheck: needsCheck === 'needs_check',
    };
  }

  /** Refuses new devices on a pool that is out of space (or read-only after running out of metadata). */
  async requireSpace(): Promise<void> {
    const status = await this.status();
    const full = status.mode === 'out_of_data_space' || status.dataUsed >= status.dataTotal;
    if (!full && status.mode === 'rw') return;
    const space = (used: number, total: number) => `${Math.round(used / 2 ** 20)} of ${Math.round(total / 2 ** 20)} MiB`;
    throw new StoreError(
      'ERR_DRIVER_NO_SPACE',
      `devicemapper: the thin pool ${this.name} is ${full ? 'out of data space' : `${status.mode} (metadata full or failed)`}: ` +
        `data ${space(status.dataUsed, status.dataTotal)}, metadata ${space(status.metadataUsed, status.metadataTotal)} used; ` +
        'remove layers or containers, or give the pool bigger devices',
    );
  }

  /**
   * The pool's transaction id is kept as a high-water mark: above every thin
   * id ever created. Opening a store probes only below it for strays.
   */
  async raiseHighWater(thinId: number): Promise<void> {
    for (;;) {
      const { transactionId } = await this.status();
      if (transactionId > thinId) return;
      try {
        await targetMessage(this.name, `set_transaction_id ${transactionId} ${thinId + 1}`);
        return;
      } catch (error) {
        // Another process raised it between the status and the message: read again.
        if (errorCode(error) !== 'EINVAL') throw error;
      }
    }
  }

  /**
   * Runs `fn` holding the pool's lock, which every creation of a thin device
   * takes: a snapshot, the base, and the search for strays (which must not
   * see a device another process is making).
   */
  locked<T>(fn: () => Promise<T>): Promise<T> {
    return withLockFile(this.lockFile, fn);
  }

  /** A new empty thin device; call it holding the lock (`locked`). */
  async createThin(thinId: number): Promise<void> {
    await this.raiseHighWater(thinId);
    await targetMessage(this.name, `create_thin ${thinId}`);
  }

  /**
   * A snapshot of `originId`; an active origin (`originName`) is suspended
   * meanwhile so the snapshot is consistent. Snapshots are made one at a
   * time across processes (the lock): another's resume would thaw the
   * origin mid-way.
   */
  async createSnapshot(thinId: number, originId: number, originName: string): Promise<void> {
    await this.locked(async () => {
      await this.raiseHighWater(thinId);
      const active = await deviceExists(originName);
      if (active) await suspendDevice(originName);
      try {
        await targetMessage(this.name, `create_snap ${thinId} ${originId}`);
      } finally {
        if (active) await resumeDevice(originName);
      }
    });
  }

  /** Deletes a thin id; false when the pool has no such device (ENODATA). */
  async deleteThin(thinId: number): Promise<boolean> {
    try {
      await targetMessage(this.name, `delete ${thinId}`);
      return true;
    } catch (error) {
      if (errorCode(error) === 'ENODATA') return false;
      throw error;
    }
  }

  /**
   * Makes thin device `thinId` live as /dev/mapper/<name>. A live one is kept,
   * and resumed if a process died while it was suspended for a snapshot.
   */
  async activateThin(name: string, thinId: number, bytes: number): Promise<string> {
    if (await deviceExists(name)) {
      if ((await deviceStatus(name)).suspended) await resumeDevice(name);
    } else {
      await createDevice(name);
      try {
        await loadTable(name, [{ start: 0, length: bytes / SECTOR, type: 'thin', params: `${this.poolDevice} ${thinId}` }]);
        await resumeDevice(name);
      } catch (error) {
        await removeDevice(name).catch(() => {});
        throw error;
      }
    }
    return `/dev/mapper/${name}`;
  }
}

/** Zeroes the first 4 KiB of a device: an empty thin-pool metadata superblock. */
function zeroStart(device: string): void {
  const fd = openSync(device, 'r+');
  try {
    writeSync(fd, Buffer.alloc(4096), 0, 4096, 0);
  } finally {
    closeSync(fd);
  }
}
