// What every storage driver implements, as containerd's snapshotters do: a few
// verbs over directories it owns, and descriptions of how to mount them. The
// drivers never touch the metadata database, and never mount: mounter.ts does.
import type { WhiteoutMode } from '../archive/apply.js';
import type { Change } from '../archive/changes.js';

/** What a driver found when it started, as `docker info` lists it: label, value. */
export type DriverStatus = Array<[string, string]>;

/** How a root filesystem (or a read-only view of one) is mounted. */
export type MountSpec =
  | {
      type: 'overlay';
      /** Top-most first. */
      lowers: string[];
      upper?: string;
      work?: string;
      metacopy?: boolean;
      redirectDir?: 'on' | 'off' | 'follow';
      volatile?: boolean;
    }
  | { type: 'bind'; source: string; readOnly: boolean };

/** The options a container's writable layer was created with. */
export interface WritableOptions {
  volatile?: boolean;
  readOnly?: boolean;
  metacopy?: boolean;
  redirectDir?: boolean;
  /** Bytes the container's own changes may take (docker's --storage-opt size); drivers that cannot limit refuse it. */
  sizeLimit?: number;
}

/** The directories of a container's writable layer, as `docker inspect` shows them. */
export interface WritableLayout {
  /** Where the container's files live: overlay's upperdir, or the container's own copy. */
  upper: string;
  /** overlay's workdir, which exists only while mounted; drivers without one have none. */
  work?: string;
  /** Where the container's root filesystem is mounted; exists only while mounted. */
  merged: string;
}

export interface StorageDriver {
  readonly name: string;
  /** How whiteouts in a layer tar become this driver's native form. */
  readonly whiteouts: WhiteoutMode;
  /** Checks the host and the root at start-up; throws ERR_DRIVER_UNSUPPORTED if the driver cannot work. */
  init(): Promise<DriverStatus>;

  /** Everything the driver keeps on disk for one layer or container; removed whole on failure. */
  layerPath(cacheId: string): string;
  /** Removes what `layerPath` names, whatever state it was left in (also for crash leftovers). */
  removePath(path: string): Promise<void>;
  /**
   * Makes the directory a layer tar is applied into: empty for a driver that
   * stacks layers (overlay2), a copy or snapshot of the parent for the others.
   */
  createLayer(cacheId: string, parentCacheId: string | null): Promise<string>;
  /** The directory holding the layer's files (its own entries at least). */
  layerDir(cacheId: string): string;

  /** Makes a container's writable layer on a layer. */
  createWritable(cacheId: string, layerCacheId: string, options: WritableOptions): Promise<void>;
  writable(cacheId: string): WritableLayout;
  /** How to mount the container's root filesystem; `chain` is its layers' cache ids, top-most first. */
  rootfsMount(cacheId: string, chain: readonly string[], options: WritableOptions): MountSpec;
  /** A read-only view of the container's tree while it is not mounted, or null when `writable().upper` is one. */
  viewMount(cacheId: string, chain: readonly string[], options: WritableOptions): MountSpec | null;
  /** The container's changes against its layer; `view` shows its tree. */
  changes(cacheId: string, chain: readonly string[], view: string): Promise<Change[]>;
  /**
   * Whether the container's files can become a layer as they are (commit in
   * place). overlay cannot when the upper directory holds redirects or
   * metacopy files, whose data lives in the layers below.
   */
  adoptable(cacheId: string): Promise<boolean>;
  /**
   * Makes the container's files the layer `layerCacheId` without copying data
   * where it can. Returns a move for the caller to make once the layer is
   * registered (overlay: the upper directory becomes the layer's, and the
   * container gets an empty one), or null when it already made the layer
   * (btrfs: a snapshot; vfs: a reflink copy).
   */
  adoptWritable(cacheId: string, layerCacheId: string): Promise<{ from: string; to: string } | null>;
  /**
   * Bytes the container's own changes take, where the driver has a cheap
   * count: the filesystem's (btrfs qgroups), or a walk of only the changes
   * (overlay's upper directory); undefined where only a diff against the
   * layers can tell.
   */
  writableUsage?(cacheId: string): Promise<number>;
  /**
   * The reason the driver's storage gives for a failed write, when it has one
   * the write's own error hides (devicemapper: a full thin pool fails writes
   * with EIO); the error itself otherwise.
   */
  explainFailure?(error: unknown): Promise<unknown>;
  /** Releases what the driver keeps active in the kernel (devicemapper's devices), for Store.shutdown. */
  release?(): Promise<void>;
}
