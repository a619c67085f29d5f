// btrfs: each layer a subvolume in <root>/btrfs/subvolumes/<id>, each child
// layer and container a writable snapshot of its parent, made and removed by
// ioctls (no btrfs-progs).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import {
  createSubvolume,
  destroySubvolume,
  isSubvolume,
  limitQgroup,
  qgroupUsage,
  setQuota,
  snapshotSubvolume,
  syncFilesystem,
} from '../native/btrfs.js';
import { statfs } from '../native/fs.js';
import { StoreError } from '../store/errors.js';
import { nearestExisting } from '../system/probes.js';
import type { DriverStatus, WritableOptions } from './driver.js';
import { VfsDriver } from './vfs.js';

export class BtrfsDriver extends VfsDriver {
  override readonly name = 'btrfs';

  constructor(root: string) {
    super(root, 'btrfs');
  }

  override async init(): Promise<DriverStatus> {
    // The backing filesystem's type only: no d_type or reflink probe, which a root on btrfs passes anyway.
    const backing = await statfs(nearestExisting(this.home));
    if (backing.typeName !== 'btrfs') {
      throw new StoreError('ERR_DRIVER_UNSUPPORTED', `btrfs: the store root is on ${backing.typeName}, not btrfs`);
    }
    // Quotas give each subvolume a qgroup that counts its exclusive bytes, so
    // container sizes need no tree walk and size limits are possible.
    await setQuota(this.home, true);
    return [['Backing Filesystem', 'btrfs'], ['Layers', 'subvolume snapshots'], ['Quotas', 'on (sizes and limits from qgroups)']];
  }

  override layerPath(cacheId: string): string {
    return join(this.home, 'subvolumes', cacheId);
  }

  protected override async copyOf(from: string | null, to: string): Promise<void> {
    await mkdir(join(this.home, 'subvolumes'), { recursive: true, mode: 0o700 });
    if (from === null) await createSubvolume(to);
    else await snapshotSubvolume(from, to);
  }

  override async removePath(path: string): Promise<void> {
    if (await isSubvolume(path).catch(() => false)) await destroySubvolume(path);
    await super.removePath(path);
  }

  override async createWritable(cacheId: string, layerCacheId: string, options: WritableOptions): Promise<void> {
    const dir = this.writable(cacheId).upper;
    await this.copyOf(this.layerDir(layerCacheId), dir);
    // The container's own changes (its exclusive bytes) may not exceed the limit.
    if (options.sizeLimit !== undefined) await limitQgroup(dir, { maxExclusive: options.sizeLimit });
  }

  /** Exclusive bytes of the container's subvolume: what it changed, as the filesystem allocated it. */
  async writableUsage(cacheId: string): Promise<number> {
    const dir = this.writable(cacheId).upper;
    await syncFilesystem(dir); // qgroup counts move at transaction commit
    return (await qgroupUsage(dir)).exclusive;
  }

  override async createLayer(cacheId: string, parentCacheId: string | null): Promise<string> {
    const dir = this.layerDir(cacheId);
    await this.copyOf(parentCacheId === null ? null : this.layerDir(parentCacheId), dir);
    return dir;
  }
}

