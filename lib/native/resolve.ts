// Paths resolved inside a directory tree as if it were "/" (openat2
// RESOLVE_IN_ROOT): where a container's mounts go in its root filesystem.
import { native, withCallerStack } from './binding.js';
import { MountFd } from './mount-api.js';

export interface OpenInTreeOptions {
  /** Create missing components inside the tree: directories, and the last one as `kind`. */
  create?: boolean;
  /** What a missing last component is created as (default 'directory'). */
  kind?: 'directory' | 'file';
}

/**
 * Opens `path` inside `root` as an O_PATH fd: symlinks and ".." resolve as if
 * `root` were "/", so nothing in the tree can lead outside it. The fd is a
 * MountFd: a mount target for moveMount, and closed when disposed.
 */
export async function openInTree(root: string, path: string, options: OpenInTreeOptions = {}): Promise<MountFd> {
  const fd = await withCallerStack(native.openInTree(root, path, options.create ?? false, options.kind ?? 'directory'));
  return new MountFd(fd);
}
