// btrfs subvolumes, snapshots and qgroups through the kernel's ioctls. Calls
// that may wait for a transaction commit run off the JS thread.
import { native, withCallerStack } from './binding.js';
import type { NativeQgroupUsage } from './types.js';

export type QgroupUsage = NativeQgroupUsage;

/** Makes an empty subvolume at `path`; its parent directory must exist. */
export async function createSubvolume(path: string): Promise<void> {
  return withCallerStack(native.btrfsCreateSubvolume(path));
}

/** Snapshots the subvolume `source` at `dest` (EINVAL if `source` is a plain directory). */
export async function snapshotSubvolume(source: string, dest: string, options: { readOnly?: boolean } = {}): Promise<void> {
  return withCallerStack(native.btrfsSnapshot(source, dest, options.readOnly ?? false));
}

/**
 * Deletes the subvolume at `path` together with any subvolumes nested inside
 * it (as a container may make), read-only ones included. ENOTTY off btrfs.
 */
export async function destroySubvolume(path: string): Promise<void> {
  return withCallerStack(native.btrfsDestroySubvolume(path));
}

/** Whether `path` is a subvolume's root directory (false for anything else, on any filesystem). */
export async function isSubvolume(path: string): Promise<boolean> {
  return withCallerStack(native.btrfsIsSubvolume(path));
}

/** The id of the subvolume holding `path` (5 for the top level). */
export async function subvolumeId(path: string): Promise<number> {
  return withCallerStack(native.btrfsSubvolumeId(path));
}

export async function isReadOnly(path: string): Promise<boolean> {
  return withCallerStack(native.btrfsGetReadOnly(path));
}

export async function setReadOnly(path: string, readOnly: boolean): Promise<void> {
  return withCallerStack(native.btrfsSetReadOnly(path, readOnly));
}

/** Commits the filesystem's transaction (qgroup numbers change at commits). */
export async function syncFilesystem(path: string): Promise<void> {
  return withCallerStack(native.btrfsSync(path));
}

/** Turns quota accounting on (qgroups for every subvolume follow) or off. */
export async function setQuota(path: string, enabled: boolean): Promise<void> {
  return withCallerStack(native.btrfsQuotaEnable(path, enabled));
}

/** The id of qgroup `level`/`id`, as qgroup ioctls take it. */
export function qgroupId(level: number, id: number): number {
  return level * 2 ** 48 + id;
}

export async function createQgroup(path: string, id: number): Promise<void> {
  return withCallerStack(native.btrfsQgroupCreate(path, id));
}

export interface QgroupLimits {
  /** Bytes the qgroup may reference; 0 or absent removes the limit. */
  maxReferenced?: number;
  /** Bytes only the qgroup may reference; 0 or absent removes the limit. */
  maxExclusive?: number;
  /** The qgroup; absent: the subvolume holding `path`. */
  qgroup?: number;
}

/** Sets a qgroup's limits; writes past them fail with EDQUOT. */
export async function limitQgroup(path: string, limits: QgroupLimits): Promise<void> {
  return withCallerStack(
    native.btrfsQgroupLimit(path, limits.qgroup ?? 0, limits.maxReferenced ?? 0, limits.maxExclusive ?? 0),
  );
}

/** Recounts all qgroups; waits for the rescan unless `wait` is false. */
export async function rescanQuota(path: string, options: { wait?: boolean } = {}): Promise<void> {
  return withCallerStack(native.btrfsQuotaRescan(path, options.wait ?? true));
}

/**
 * A qgroup's referenced/exclusive bytes and limits, read from the quota tree
 * (no tree walk); `qgroup` absent: the subvolume holding `path`. The numbers
 * are as of the last transaction commit (see syncFilesystem).
 */
export async function qgroupUsage(path: string, qgroup = 0): Promise<QgroupUsage> {
  return withCallerStack(native.btrfsQgroupUsage(path, qgroup));
}
