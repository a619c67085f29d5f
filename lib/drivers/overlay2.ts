// overlay2: each layer's own files in <root>/overlay2/<cache-id>/diff, stacked
// by the kernel's overlayfs; whiteouts are 0/0 character devices.
import { mkdirSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { probeOverlayFeatures } from '../native/overlay.js';
import { StoreError } from '../store/errors.js';
import { refuseSizeLimit } from './size-limit.js';
import { directorySize } from '../system/directory-size.js';
import { statfs, supportsDType } from '../native/fs.js';
import { nearestExisting } from '../system/probes.js';
import { hasXattr, redirectOf, upperChanges, type Change } from '../archive/changes.js';
import type { DriverStatus, MountSpec, StorageDriver, WritableLayout, WritableOptions } from './driver.js';

export class Overlay2Driver implements StorageDriver {
  readonly name = 'overlay2';
  readonly whiteouts = 'overlay' as const;
  readonly home: string;

  constructor(root: string) {
    this.home = join(root, 'overlay2');
  }

  /**
   * Docker's start-up checks: overlay present, d_type on the backing
   * filesystem (overlay misbehaves without it), and no overlay under the root.
   * Mounts always use index=off (a lower in use as another mount's upper would
   * fail with EBUSY) and trusted.* xattrs (we run as real root, not in a user
   * namespace, so userxattr does not apply).
   */
  async init(): Promise<DriverStatus> {
    const overlay = probeOverlayFeatures();
    // The backing filesystem's type and d_type only: no reflink probe, which overlay2 has no use for.
    const probed = nearestExisting(this.home);
    const [backing, dType] = await Promise.all([statfs(probed), supportsDType(probed)]);
    const refuse = (why: string) => {
      throw new StoreError('ERR_DRIVER_UNSUPPORTED', `overlay2: ${why}`);
    };
    if (!overlay.available) refuse('the kernel has no overlay filesystem');
    if (backing.typeName === 'overlay') refuse('the store root is on overlayfs, which cannot hold upper directories: use vfs, or a root on another filesystem');
    if (!dType) {
      refuse(
        `the backing ${backing.typeName} filesystem is formatted without d_type support, which leads to incorrect behavior; ` +
          'reformat it with d_type (xfs: ftype=1, ext4: -O filetype)',
      );
    }
    return [
      ['Backing Filesystem', backing.typeName],
      ['Supports d_type', 'true'],
      ['Using metacopy', 'per container (--metacopy)'],
      // Changes and commits read redirects and metacopy files from the merged
      // tree, so the upper directory is never archived blindly.
      ['Native Overlay Diff', 'true'],
      ['userxattr', 'false'],
      ['index', 'off'],
      ['Layer Stacking', overlay.lowerdirPlus ? 'lowerdir+ (fsconfig)' : 'mount(2) with short /proc/self/fd paths'],
    ];
  }

  layerPath(cacheId: string): string {
    return join(this.home, cacheId);
  }

  layerDir(cacheId: string): string {
    return join(this.home, cacheId, 'diff');
  }

  async createLayer(cacheId: string): Promise<string> {
    const dir = this.layerDir(cacheId);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    return dir;
  }

  writable(cacheId: string): WritableLayout {
    const dir = this.layerPath(cacheId);
    return { upper: join(dir, 'diff'), work: join(dir, 'work'), merged: join(dir, 'merged') };
  }

  // Only the upper directory: work and merged exist while mounted, so an
  // idle container costs two directories.
  async createWritable(cacheId: string, _layerCacheId: string, options: WritableOptions): Promise<void> {
    if (options.sizeLimit !== undefined) refuseSizeLimit(this.name);
    // Synchronous: a few mkdirs cost less than a trip through the thread pool.
    mkdirSync(this.writable(cacheId).upper, { recursive: true, mode: 0o755 });
  }

  rootfsMount(cacheId: string, chain: readonly string[], options: WritableOptions): MountSpec {
    const { upper, work } = this.writable(cacheId);
    const lowers = chain.map((id) => this.layerDir(id));
    // metacopy needs redirects on; a read-only mount only follows them
    const redirectDir = options.redirectDir || options.metacopy ? 'on' : 'off';
    const common = { redirectDir, ...(options.metacopy && { metacopy: true }) } as const;
    if (options.readOnly) return { type: 'overlay', ...common, lowers: [upper, ...lowers] };
    return { type: 'overlay', ...common, lowers, upper, work: work!, ...(options.volatile && { volatile: true }) };
  }

  viewMount(cacheId: string, chain: readonly string[], options: WritableOptions): MountSpec {
    const lowers = [this.writable(cacheId).upper, ...chain.map((id) => this.layerDir(id))];
    const redirectDir = options.redirectDir || options.metacopy ? 'follow' : 'off';
    return { type: 'overlay', lowers, redirectDir, ...(options.metacopy && { metacopy: true }) };
  }

  /** Docker's overlay2 DiffSize: the upper directory holds exactly the changes. */
  async writableUsage(cacheId: string): Promise<number> {
    return directorySize(this.writable(cacheId).upper);
  }

  async changes(cacheId: string, chain: readonly string[], view: string): Promise<Change[]> {
    return upperChanges(this.writable(cacheId).upper, chain.map((id) => this.layerDir(id)), view);
  }

  async adoptable(cacheId: string): Promise<boolean> {
    const inPlace = async (dir: string): Promise<boolean> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) {
          if (redirectOf(path) !== undefined || !(await inPlace(path))) return false;
        } else if (entry.isFile() && hasXattr(path, 'trusted.overlay.metacopy')) {
          return false;
        }
      }
      return true;
    };
    return inPlace(this.writable(cacheId).upper);
  }

  async adoptWritable(cacheId: string, layerCacheId: string): Promise<{ from: string; to: string }> {
    await mkdir(this.layerPath(layerCacheId), { mode: 0o755 });
    return { from: this.writable(cacheId).upper, to: this.layerDir(layerCacheId) };
  }

  async removePath(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
  }
}
