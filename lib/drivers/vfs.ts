// vfs: every layer and container a full copy of its parent, in
// <root>/vfs/dir/<id>; copies share extents by reflink where the filesystem
// can (xfs with reflink=1, btrfs), in native code, in parallel.
// --storage-opt vfs.copy=copy makes every copy a full one (no shared
// extents): the plain copy that reflinks are measured against (bench/copy-up.ts).
import { mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';

import type { Change } from '../archive/changes.js';
import { treeChanges } from '../archive/tree-changes.js';
import { copyTree } from '../native/tree.js';
import { StoreError } from '../store/errors.js';
import { probeBackingFilesystem } from '../system/probes.js';
import { refuseSizeLimit } from './size-limit.js';
import type { DriverStatus, MountSpec, StorageDriver, WritableLayout, WritableOptions } from './driver.js';

/** The options vfs takes (as docker's --storage-opt): vfs.copy=reflink (the default: share extents where the filesystem can) or copy. */
export const VFS_OPTIONS = ['vfs.copy'];

export class VfsDriver implements StorageDriver {
  readonly name: string = 'vfs';
  readonly whiteouts = 'remove' as const;
  readonly home: string;
  private readonly reflink: boolean;

  constructor(root: string, name = 'vfs', private readonly options: Readonly<Record<string, string>> = {}) {
    this.home = join(root, name);
    this.reflink = options['vfs.copy'] !== 'copy';
  }

  async init(): Promise<DriverStatus> {
    const unknown = Object.keys(this.options).filter((key) => !VFS_OPTIONS.includes(key));
    if (unknown.length > 0) throw new StoreError('ERR_DRIVER_UNSUPPORTED', `vfs: unknown option ${unknown.join(', ')} (use ${VFS_OPTIONS.join(', ')})`);
    const copy = this.options['vfs.copy'];
    if (copy !== undefined && copy !== 'reflink' && copy !== 'copy') throw new StoreError('ERR_DRIVER_UNSUPPORTED', `vfs: vfs.copy=${copy}: use reflink or copy`);
    const backing = await probeBackingFilesystem(this.home);
    const copies = !this.reflink ? 'full (vfs.copy=copy)' : backing.reflink ? 'reflink (extents shared)' : 'full (no reflinks on this filesystem)';
    return [
      ['Backing Filesystem', backing.type],
      ['Copies', copies],
    ];
  }

  layerPath(cacheId: string): string {
    return join(this.home, 'dir', cacheId);
  }

  layerDir(cacheId: string): string {
    return this.layerPath(cacheId);
  }

  /** A copy of `from` (or an empty directory) at `to`. */
  protected async copyOf(from: string | null, to: string): Promise<void> {
    if (from === null) await mkdir(to, { recursive: true, mode: 0o755 });
    else await copyTree(from, to, { reflink: this.reflink });
  }

  async createLayer(cacheId: string, parentCacheId: string | null): Promise<string> {
    await mkdir(join(this.home, 'dir'), { recursive: true, mode: 0o700 });
    const dir = this.layerDir(cacheId);
    await this.copyOf(parentCacheId === null ? null : this.layerDir(parentCacheId), dir);
    return dir;
  }

  /** A container's files and its mount point (kept apart so the mount point is not in its own tree). */
  async removePath(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
    await rm(join(this.home, 'mnt', basename(path)), { recursive: true, force: true });
  }

  writable(cacheId: string): WritableLayout {
    return { upper: this.layerPath(cacheId), merged: join(this.home, 'mnt', cacheId) };
  }

  async createWritable(cacheId: string, layerCacheId: string, options: WritableOptions): Promise<void> {
    if (options.sizeLimit !== undefined) refuseSizeLimit(this.name);
    await this.copyOf(this.layerDir(layerCacheId), this.writable(cacheId).upper);
  }

  rootfsMount(cacheId: string, _chain: readonly string[], options: WritableOptions): MountSpec {
    return { type: 'bind', source: this.writable(cacheId).upper, readOnly: options.readOnly ?? false };
  }

  async adoptable(): Promise<boolean> {
    return true;
  }

  /** The new layer is a copy (reflinked where the filesystem can) or a snapshot of the container's tree. */
  async adoptWritable(cacheId: string, layerCacheId: string): Promise<null> {
    await this.copyOf(this.writable(cacheId).upper, this.layerDir(layerCacheId));
    return null;
  }

  viewMount(): null {
    return null;
  }

  changes(_cacheId: string, chain: readonly string[], view: string): Promise<Change[]> {
    return treeChanges(view, chain[0] === undefined ? null : this.layerDir(chain[0]));
  }
}
