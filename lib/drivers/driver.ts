// What every storage driver implements, as containerd's snapshotters do: a few
// verbs over directories it owns. Drivers never touch the metadata database.
import type { WhiteoutMode } from '../archive/apply.js';

/** What a driver found when it started, as `docker info` lists it: label, value. */
export type DriverStatus = Array<[string, string]>;

export interface LayerDriver {
  readonly name: string;
  /** Checks the host and the root at start-up; throws ERR_DRIVER_UNSUPPORTED if the driver cannot work. */
  init(): Promise<DriverStatus>;
  /** How whiteouts in a layer tar become this driver's native form. */
  readonly whiteouts: WhiteoutMode;
  /** Everything the driver keeps on disk for one layer; removed whole on failure. */
  layerPath(cacheId: string): string;
  /**
   * Makes the directory a layer tar is applied into: empty for a driver that
   * stacks layers (overlay2), a copy of the parent for one that snapshots.
   */
  createLayer(cacheId: string, parentCacheId: string | null): Promise<string>;
  /** The directory holding the files of the layer's own tar entries. */
  layerDir(cacheId: string): string;
  removeLayer(cacheId: string): Promise<void>;
}

/** The directories of a container's writable layer. */
export interface WritableLayout {
  /** Where the container's changes land (overlay's upperdir). */
  upper: string;
  work: string;
  /** Where the container's root filesystem is mounted. */
  merged: string;
}

export interface ContainerDriver extends LayerDriver {
  createWritable(cacheId: string): Promise<WritableLayout>;
  writable(cacheId: string): WritableLayout;
}
