// The new mount API (fsopen, fspick, fsconfig, fsmount, move_mount, open_tree,
// mount_setattr) over owned file descriptors, and the mount helpers built on it.
import { close, closeSync } from 'node:fs';
import { promisify } from 'node:util';

import { native, withCallerStack } from './binding.js';

/** Per-mount attributes (MOUNT_ATTR_*); at most one of noatime, relatime, strictatime. */
export type MountAttr =
  | 'rdonly' | 'nosuid' | 'nodev' | 'noexec' | 'noatime' | 'relatime' | 'strictatime'
  | 'nodiratime' | 'nosymfollow';

export type Propagation = 'private' | 'shared' | 'slave' | 'unbindable';

function constant(name: string): number {
  const value = native.mountApiConstants[name];
  if (value === undefined) throw new Error(`native mount API constant ${name} is missing`);
  return value;
}

const AT_FDCWD = constant('AT_FDCWD');
const AT_EMPTY_PATH = constant('AT_EMPTY_PATH');
const AT_RECURSIVE = constant('AT_RECURSIVE');
const AT_SYMLINK_NOFOLLOW = constant('AT_SYMLINK_NOFOLLOW');
const ATIME_MASK = constant('MOUNT_ATTR__ATIME');
const ATIME_MODES: ReadonlySet<MountAttr> = new Set(['noatime', 'relatime', 'strictatime']);

const closeFd = promisify(close);

/**
 * An owned mount-API file descriptor: a filesystem context (fsopen), a detached
 * mount (fsmount, open_tree with clone) or a mount reference (open_tree). Close
 * it (or let `using` / `await using` do it) as soon as it is no longer needed:
 * a detached mount is freed on close, and an attached mount stays busy for
 * umount while any fd refers to it.
 */
export class MountFd implements Disposable, AsyncDisposable {
  #fd: number | undefined;

  constructor(fd: number) {
    this.#fd = fd;
  }

  get fd(): number {
    if (this.#fd === undefined) throw new Error('the mount fd is already closed');
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd === undefined;
  }

  /** Closes the fd; closing twice is a no-op. */
  async close(): Promise<void> {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) await closeFd(fd);
  }

  closeSync(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) closeSync(fd);
  }

  [Symbol.dispose](): void {
    this.closeSync();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A path (relative to the cwd), a mount fd itself, or a path relative to a directory fd. */
export type MountLocation = string | MountFd | { dir: MountFd | number; path: string };

function locate(where: MountLocation): { dirfd: number; path: string; emptyPath: boolean } {
  if (typeof where === 'string') return { dirfd: AT_FDCWD, path: where, emptyPath: false };
  if (where instanceof MountFd) return { dirfd: where.fd, path: '', emptyPath: true };
  return { dirfd: fdOf(where.dir), path: where.path, emptyPath: false };
}

function fdOf(fd: MountFd | number): number {
  return typeof fd === 'number' ? fd : fd.fd;
}

function attrBits(attrs: readonly MountAttr[]): number {
  let bits = 0;
  for (const attr of attrs) bits |= constant(`MOUNT_ATTR_${attr.toUpperCase()}`);
  if (attrs.filter((a) => ATIME_MODES.has(a)).length > 1) {
    throw new TypeError('At most one of noatime, relatime and strictatime can be given');
  }
  return bits >>> 0;
}

/** Opens a filesystem context for `fstype` (fsopen). */
export async function fsopen(fstype: string): Promise<MountFd> {
  return new MountFd(await withCallerStack(native.fsopen(fstype)));
}

export type FsconfigCommand =
  | { cmd: 'flag'; key: string }
  | { cmd: 'string'; key: string; value: string }
  | { cmd: 'fd'; key: string; fd: MountFd | number }
  | { cmd: 'path'; key: string; path: string; dir?: MountFd | number }
  | { cmd: 'path-empty'; key: string; fd: MountFd | number }
  | { cmd: 'create' }
  | { cmd: 'reconfigure' };

/**
 * One fsconfig(2) command. A rejection carries the filesystem's own messages
 * in its message and in `kernelLog` (e.g. "e tmpfs: Bad value for 'size'").
 */
export async function fsconfig(context: MountFd, command: FsconfigCommand): Promise<void> {
  const fd = context.fd;
  let call: Promise<void>;
  switch (command.cmd) {
    case 'flag':
      call = native.fsconfig(fd, constant('FSCONFIG_SET_FLAG'), command.key, null, 0);
      break;
    case 'string':
      call = native.fsconfig(fd, constant('FSCONFIG_SET_STRING'), command.key, command.value, 0);
      break;
    case 'fd':
      call = native.fsconfig(fd, constant('FSCONFIG_SET_FD'), command.key, null, fdOf(command.fd));
      break;
    case 'path':
      call = native.fsconfig(
        fd, constant('FSCONFIG_SET_PATH'), command.key, command.path,
        command.dir === undefined ? AT_FDCWD : fdOf(command.dir),
      );
      break;
    case 'path-empty':
      call = native.fsconfig(fd, constant('FSCONFIG_SET_PATH_EMPTY'), command.key, '', fdOf(command.fd));
      break;
    case 'create':
      call = native.fsconfig(fd, constant('FSCONFIG_CMD_CREATE'), null, null, 0);
      break;
    case 'reconfigure':
      call = native.fsconfig(fd, constant('FSCONFIG_CMD_RECONFIGURE'), null, null, 0);
      break;
  }
  return withCallerStack(call);
}

/** Turns a created context into a detached mount (fsmount). */
export async function fsmount(context: MountFd, attrs: readonly MountAttr[] = []): Promise<MountFd> {
  return new MountFd(await withCallerStack(native.fsmount(context.fd, attrBits(attrs))));
}

export interface MoveMountOptions {
  /** Follow a symlink at the last component of either path (the kernel does not by default). */
  followSymlinks?: boolean;
}

/** Attaches (or moves) the mount at `from` onto `to` (move_mount). */
export async function moveMount(
  from: MountLocation, to: MountLocation, options: MoveMountOptions = {},
): Promise<void> {
  const f = locate(from);
  const t = locate(to);
  let flags = 0;
  if (f.emptyPath) flags |= constant('MOVE_MOUNT_F_EMPTY_PATH');
  if (t.emptyPath) flags |= constant('MOVE_MOUNT_T_EMPTY_PATH');
  if (options.followSymlinks) flags |= constant('MOVE_MOUNT_F_SYMLINKS') | constant('MOVE_MOUNT_T_SYMLINKS');
  return withCallerStack(native.moveMount(f.dirfd, f.path, t.dirfd, t.path, flags));
}

export interface OpenTreeOptions {
  /** Make a detached copy of the mount (OPEN_TREE_CLONE), as a bind mount does. */
  clone?: boolean;
  /** With clone: copy the submounts too (AT_RECURSIVE), as a recursive bind does. */
  recursive?: boolean;
  /** Do not follow a symlink at the last component. */
  noFollow?: boolean;
}

/** A reference to, or with `clone` a detached copy of, the mount at `where` (open_tree). */
export async function openTree(where: MountLocation, options: OpenTreeOptions = {}): Promise<MountFd> {
  const w = locate(where);
  let flags = w.emptyPath ? AT_EMPTY_PATH : 0;
  if (options.clone) flags |= constant('OPEN_TREE_CLONE');
  if (options.recursive) flags |= AT_RECURSIVE;
  if (options.noFollow) flags |= AT_SYMLINK_NOFOLLOW;
  return new MountFd(await withCallerStack(native.openTree(w.dirfd, w.path, flags >>> 0)));
}

export interface FspickOptions {
  /** Do not follow a symlink at the last component. */
  noFollow?: boolean;
}

/**
 * A context for the superblock mounted at `where` (fspick): set parameters,
 * then `fsconfig(context, { cmd: 'reconfigure' })` applies them (a remount).
 */
export async function fspick(where: MountLocation, options: FspickOptions = {}): Promise<MountFd> {
  const w = locate(where);
  let flags = w.emptyPath ? constant('FSPICK_EMPTY_PATH') : 0;
  if (options.noFollow) flags |= constant('FSPICK_SYMLINK_NOFOLLOW');
  return new MountFd(await withCallerStack(native.fspick(w.dirfd, w.path, flags)));
}

export interface MountSetattrOptions {
  /** Apply to every mount below too (AT_RECURSIVE). */
  recursive?: boolean;
  set?: readonly MountAttr[];
  clear?: readonly MountAttr[];
  propagation?: Propagation;
  noFollow?: boolean;
}

/** Changes attributes and/or propagation of the mount at `where` (mount_setattr). */
export async function mountSetattr(where: MountLocation, options: MountSetattrOptions): Promise<void> {
  const w = locate(where);
  let flags = w.emptyPath ? AT_EMPTY_PATH : 0;
  if (options.recursive) flags |= AT_RECURSIVE;
  if (options.noFollow) flags |= AT_SYMLINK_NOFOLLOW;
  const set = options.set ?? [];
  const clear = options.clear ?? [];
  const attrSet = attrBits(set);
  let attrClr = attrBits(clear);
  // The atime modes are one enumerated field: changing it means clearing all of it.
  if ([...set, ...clear].some((a) => ATIME_MODES.has(a))) attrClr |= ATIME_MASK;
  const propagation = options.propagation ? constant(`MS_${options.propagation.toUpperCase()}`) : 0;
  return withCallerStack(
    native.mountSetattr(w.dirfd, w.path, flags >>> 0, attrSet, attrClr >>> 0, propagation, -1),
  );
}

export interface MountFsOptions {
  fstype: string;
  /** The "source" parameter (a device, a file, or a name such as "tmpfs"). */
  source?: string;
  /** Filesystem parameters in order; `true` sets a flag parameter. */
  options?: Readonly<Record<string, string | true>>;
  target: string;
  attrs?: readonly MountAttr[];
}

/** Mounts a filesystem through the new API: fsopen, fsconfig each, create, fsmount, move_mount. */
export async function mountFs(spec: MountFsOptions): Promise<void> {
  await using context = await fsopen(spec.fstype);
  if (spec.source !== undefined) await fsconfig(context, { cmd: 'string', key: 'source', value: spec.source });
  for (const [key, value] of Object.entries(spec.options ?? {})) {
    await fsconfig(context, value === true ? { cmd: 'flag', key } : { cmd: 'string', key, value });
  }
  await fsconfig(context, { cmd: 'create' });
  await using mount = await fsmount(context, spec.attrs ?? []);
  await moveMount(mount, spec.target);
}

export interface BindMountOptions {
  /** Bind the submounts below `source` too (rbind). */
  recursive?: boolean;
  /** Read-only, submounts included when recursive; set before the bind becomes visible. */
  readOnly?: boolean;
}

/** Bind-mounts `source` on `target`: open_tree(clone) [+ mount_setattr(rdonly)] + move_mount. */
export async function bindMount(source: string, target: string, options: BindMountOptions = {}): Promise<void> {
  const recursive = options.recursive ?? false;
  await using tree = await openTree(source, { clone: true, recursive });
  if (options.readOnly) await mountSetattr(tree, { recursive, set: ['rdonly'] });
  await moveMount(tree, target);
}

/** Sets the propagation type of the mount at `target` (and below, when recursive). */
export async function setPropagation(target: string, kind: Propagation, recursive = false): Promise<void> {
  return mountSetattr(target, { recursive, propagation: kind });
}
