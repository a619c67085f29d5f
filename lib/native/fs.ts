// Filesystem primitives: extended attributes (never following symlinks),
// device nodes and overlay whiteouts, statfs, and the d_type check.
import { native, withCallerStack } from './binding.js';
import type { NativeStatfs } from './types.js';

/** 'create' fails with EEXIST if the attribute exists, 'replace' with ENODATA if not. */
export type XattrSetFlag = 'create' | 'replace';

export function getXattrSync(path: string, name: string): Buffer {
  return native.lgetxattrSync(path, name);
}

function xattrFlagBits(flag: XattrSetFlag | undefined): number {
  if (flag === undefined) return 0;
  if (flag === 'create') return native.fsConstants.XATTR_CREATE ?? 0;
  if (flag === 'replace') return native.fsConstants.XATTR_REPLACE ?? 0;
  throw new TypeError(`Unknown xattr flag "${String(flag)}"`);
}

export function setXattrSync(path: string, name: string, value: Buffer | string, flag?: XattrSetFlag): void {
  native.lsetxattrSync(path, name, typeof value === 'string' ? Buffer.from(value) : value, xattrFlagBits(flag));
}

export function listXattrsSync(path: string): string[] {
  return native.llistxattrSync(path);
}

export function removeXattrSync(path: string, name: string): void {
  native.lremovexattrSync(path, name);
}

export type NodeType = 'file' | 'char' | 'block' | 'fifo' | 'socket';

/** mknod(2); `mode` is the permission bits (the umask applies). */
export function mknodSync(path: string, type: NodeType, mode: number, major = 0, minor = 0): void {
  native.mknodSync(path, type, mode, major, minor);
}

/** An overlayfs whiteout at `path`: a character device 0/0 with mode 0. */
export function whiteoutSync(path: string): void {
  native.whiteoutSync(path);
}

export type FsTypeName =
  | 'ext4' | 'xfs' | 'btrfs' | 'tmpfs' | 'ramfs' | 'overlay' | 'fuse' | 'nfs' | 'smb' | 'squashfs'
  | 'erofs' | 'zfs' | 'f2fs' | 'ecryptfs' | 'proc' | 'sysfs' | 'devpts' | 'cgroup' | 'cgroup2'
  | 'unknown';

export type StatfsFlag =
  | 'rdonly' | 'nosuid' | 'nodev' | 'noexec' | 'synchronous' | 'mandlock' | 'noatime'
  | 'nodiratime' | 'relatime' | 'nosymfollow';

const statfsFlags: readonly StatfsFlag[] = [
  'rdonly', 'nosuid', 'nodev', 'noexec', 'synchronous', 'mandlock', 'noatime', 'nodiratime',
  'relatime', 'nosymfollow',
];

export interface Statfs {
  /** The superblock magic number (statfs f_type). */
  type: number;
  typeName: FsTypeName;
  blockSize: number;
  blocks: number;
  blocksFree: number;
  blocksAvailable: number;
  files: number;
  filesFree: number;
  nameMax: number;
  /** The mount's flags (ST_*), by name. */
  flags: StatfsFlag[];
}

function toStatfs(raw: NativeStatfs): Statfs {
  const flags = statfsFlags.filter((f) => (raw.flags & (native.fsConstants[`ST_${f.toUpperCase()}`] ?? 0)) !== 0);
  return { ...raw, typeName: raw.typeName as FsTypeName, flags };
}

export async function statfs(path: string): Promise<Statfs> {
  return toStatfs(await withCallerStack(native.statfs(path)));
}

export function statfsSync(path: string): Statfs {
  return toStatfs(native.statfsSync(path));
}

/**
 * Whether `dir`'s filesystem reports entry types in readdir (overlayfs needs
 * it), checked as Docker does: entries are made in a temporary directory
 * inside `dir`, listed with getdents64, and removed.
 */
export async function supportsDType(dir: string): Promise<boolean> {
  return withCallerStack(native.supportsDType(dir));
}
