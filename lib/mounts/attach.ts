// A container's mounts inside its root filesystem: volumes, bind mounts and
// tmpfs, each target resolved inside the root filesystem (a symlink in the
// image cannot send a mount to the host), attached with the new mount API.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { promisify } from 'node:util';

import { unmount } from '../native/mount.js';
import { fsconfig, fsmount, fsopen, moveMount, mountSetattr, openTree, type MountAttr, type MountFd } from '../native/mount-api.js';
import { openInTree } from '../native/resolve.js';
import type { VolumeStore } from '../store/volumes.js';
import { mountsBelow } from '../system/mountinfo.js';
import { sensitiveBindReason } from './safety.js';
import { MountSpecError, type BindMountSpec, type MountSpec, type TmpfsMountSpec } from './spec.js';

// Promisified when called: the CLI loads child_process only for a command that runs one.
const run = (file: string, args: readonly string[]) => promisify(execFile)(file, args);

/** A mount as a container records it: the spec, and for a volume mount the volume it uses. */
export interface ContainerMount {
  spec: MountSpec;
  /** The volume's name (an anonymous one is named when the container is created). */
  volume: string | null;
  /** A bind mount whose creator allowed a sensitive source (--allow-sensitive-binds). */
  allowSensitive: boolean;
}

const depth = (target: string) => target.split('/').length;

/** Mounts each of `mounts` in `rootfs`, parents before children; on failure nothing stays mounted or in use. */
export async function attachMounts(rootfs: string, mounts: readonly ContainerMount[], volumes: VolumeStore): Promise<void> {
  const ordered = [...mounts].sort((a, b) => depth(a.spec.target) - depth(b.spec.target));
  const acquired: string[] = [];
  try {
    for (const mount of ordered) {
      if (mount.spec.type === 'volume') {
        const volume = await volumes.acquire(mount.volume!);
        acquired.push(volume.name);
        await using target = await openInTree(rootfs, mount.spec.target, { create: true });
        if (!mount.spec.noCopy) await fillFromImage(target, volume.mountpoint);
        await attachBind(volume.mountpoint, target, { readOnly: mount.spec.readOnly, recursive: 'enabled', propagation: 'rprivate' }, null);
      } else if (mount.spec.type === 'bind') {
        const spec = mount.spec;
        if (!existsSync(spec.source) && spec.createSource) mkdirSync(spec.source, { recursive: true, mode: 0o755 });
        await using target = await openInTree(rootfs, spec.target, { create: true, kind: targetKind(spec) });
        await attachBind(spec.source, target, spec, mount.allowSensitive ? null : volumes.storeRoot);
      } else {
        await using target = await openInTree(rootfs, mount.spec.target, { create: true });
        await attachTmpfs(mount.spec, target);
      }
    }
  } catch (error) {
    await detachMounts(rootfs, [], volumes, true);
    for (const name of acquired.reverse()) await volumes.release(name);
    throw error;
  }
}

/** A file bound onto a file; everything else onto a directory. */
function targetKind(spec: MountSpec): 'directory' | 'file' {
  return spec.type === 'bind' && existsSync(spec.source) && !statSync(spec.source).isDirectory() ? 'file' : 'directory';
}

/**
 * Creates the missing targets of `mounts` in `rootfs` (a writable view of a
 * container that is mounted read-only), so that they exist when it is.
 */
export async function createMountTargets(rootfs: string, mounts: readonly ContainerMount[]): Promise<void> {
  for (const { spec } of mounts) {
    const target = await openInTree(rootfs, spec.target, { create: true, kind: targetKind(spec) });
    await target.close();
  }
}

/** Unmounts everything mounted below `rootfs` (deepest, latest first), then releases the volumes. */
export async function detachMounts(rootfs: string, mounts: readonly ContainerMount[], volumes: VolumeStore, lazy: boolean): Promise<void> {
  const points = mountsBelow(rootfs).filter((point) => point !== rootfs).reverse();
  // nofollow: the container may have put symlinks where paths led to mounts.
  for (const point of points) await unmount(point, lazy ? ['detach', 'nofollow'] : ['nofollow']);
  for (const mount of mounts) if (mount.volume !== null) await volumes.release(mount.volume);
}

/**
 * Binds `source` onto `target`. With `storeRoot` given, the tree opened is
 * checked again for a sensitive host path: the source was checked when the
 * container was created, but a path (or a symlink on it) can be changed since.
 */
async function attachBind(
  source: string,
  target: MountFd,
  options: Pick<BindMountSpec, 'readOnly' | 'recursive' | 'propagation'>,
  storeRoot: string | null,
): Promise<void> {
  const recursive = options.recursive !== 'disabled';
  // The check and the mount are of one opened object: no window to swap the path.
  await using opened = await openInTree('/', source);
  if (storeRoot !== null) {
    const real = readlinkSync(`/proc/self/fd/${opened.fd}`);
    const reason = sensitiveBindReason(real, storeRoot);
    if (reason) throw new MountSpecError(`refusing to bind-mount ${source}: it now leads to ${real}: ${reason}`);
  }
  await using tree = await openTree(opened, { clone: true, recursive });
  if (options.readOnly) {
    // Read-only reaches the submounts too, unless asked to leave them writable.
    await mountSetattr(tree, { recursive: recursive && options.recursive !== 'writable', set: ['rdonly'] });
  }
  await moveMount(tree, target);
  const propagation = options.propagation.replace(/^r/, '') as 'private' | 'shared' | 'slave';
  await mountSetattr(tree, { recursive: options.propagation.startsWith('r'), propagation });
}

async function attachTmpfs(spec: TmpfsMountSpec, target: MountFd): Promise<void> {
  await using context = await fsopen('tmpfs');
  await fsconfig(context, { cmd: 'string', key: 'source', value: 'tmpfs' });
  if (spec.size !== undefined) await fsconfig(context, { cmd: 'string', key: 'size', value: String(spec.size) });
  await fsconfig(context, { cmd: 'string', key: 'mode', value: (spec.mode ?? 0o1777).toString(8) });
  await fsconfig(context, { cmd: 'create' });
  // Docker's defaults for a tmpfs mount: no setuid, no devices, no executables.
  const attrs: MountAttr[] = ['nosuid', 'nodev', 'noexec', ...(spec.readOnly ? (['rdonly'] as const) : [])];
  await using mount = await fsmount(context, attrs);
  await moveMount(mount, target);
}

/**
 * An empty volume gets the image's content at its target, owners and modes
 * kept (Docker's copy-on-first-use, which `nocopy` turns off).
 */
async function fillFromImage(target: MountFd, data: string): Promise<void> {
  if (readdirSync(data).length > 0) return;
  const imagePath = readlinkSync(`/proc/self/fd/${target.fd}`);
  if (!statSync(imagePath).isDirectory() || readdirSync(imagePath).length === 0) return;
  await run('cp', ['-a', '--reflink=auto', '--', `${imagePath}/.`, `${data}/`]);
}
