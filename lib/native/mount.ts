// Classic mount(2) and umount2(2), with flags named as in <sys/mount.h>, and
// whether a path is a mount's root.
import { native, withCallerStack } from './binding.js';

export type MountFlag =
  | 'rdonly' | 'nosuid' | 'nodev' | 'noexec' | 'synchronous' | 'remount' | 'mandlock'
  | 'dirsync' | 'nosymfollow' | 'noatime' | 'nodiratime' | 'bind' | 'move' | 'rec'
  | 'silent' | 'unbindable' | 'private' | 'slave' | 'shared' | 'relatime'
  | 'strictatime' | 'lazytime';

export type UnmountFlag = 'force' | 'detach' | 'expire' | 'nofollow';

export interface MountOptions {
  /** The device or filesystem source; empty for remounts and propagation changes. */
  source?: string;
  fstype?: string;
  flags?: readonly MountFlag[];
  /** The filesystem-specific option string (the fifth argument of mount(2)). */
  data?: string;
}

/** ORs the named constants of mount.cc (MS_*, MNT_*, UMOUNT_*) together. */
function constantBits(keys: readonly string[]): number {
  let bits = 0;
  for (const key of keys) {
    const bit = native.mountConstants[key];
    if (bit === undefined) throw new TypeError(`Unknown mount flag "${key}"`);
    bits |= bit;
  }
  return bits >>> 0;
}

export function mountFlagBits(flags: readonly MountFlag[]): number {
  return constantBits(flags.map((f) => `MS_${f.toUpperCase()}`));
}

export async function mount(target: string, options: MountOptions = {}): Promise<void> {
  const bits = mountFlagBits(options.flags ?? []);
  return withCallerStack(
    native.mount(options.source ?? '', target, options.fstype ?? '', bits, options.data ?? ''),
  );
}

export async function unmount(target: string, flags: readonly UnmountFlag[] = []): Promise<void> {
  const bits = constantBits(
    flags.map((f) => (f === 'nofollow' ? 'UMOUNT_NOFOLLOW' : `MNT_${f.toUpperCase()}`)),
  );
  return withCallerStack(native.umount2(target, bits));
}

/**
 * Whether `path` (a final symlink not followed) is the root of a mount, from
 * statx (Linux 5.8); null where the kernel cannot tell. A path that does not
 * exist is not one.
 */
export function isMountRoot(path: string): boolean | null {
  return native.isMountRootSync(path);
}
