// Host paths a bind mount must not hand to a container unless the caller says
// so explicitly: they give it the host (/, /etc, /proc, /sys, /dev), the
// store's own data, or control of a container runtime (its socket).
import { existsSync, realpathSync } from 'node:fs';
import { posix } from 'node:path';

import { MountSpecError } from './spec.js';

const SENSITIVE_EXACT = ['/', '/etc'];
/** Anything at or below these. */
const SENSITIVE_TREES = ['/proc', '/sys', '/dev'];
export const RUNTIME_SOCKETS = [
  '/var/run/docker.sock',
  '/run/docker.sock',
  '/run/containerd/containerd.sock',
  '/var/run/containerd/containerd.sock',
  '/run/podman/podman.sock',
  '/run/crio/crio.sock',
  '/var/run/crio/crio.sock',
];

const within = (path: string, dir: string) => path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);

/** Why binding `source` would be unsafe, or undefined when it is not. Symlinks are resolved first. */
export function sensitiveBindReason(source: string, storeRoot: string): string | undefined {
  const real = existsSync(source) ? realpathSync(source) : posix.normalize(source);
  const root = existsSync(storeRoot) ? realpathSync(storeRoot) : storeRoot;
  if (SENSITIVE_EXACT.includes(real)) return `${real} is a sensitive host path`;
  const tree = SENSITIVE_TREES.find((dir) => within(real, dir));
  if (tree) return `${real} is in ${tree}, a sensitive host path`;
  if (within(real, root)) return `${real} is inside the store root ${root}`;
  if (within(root, real)) return `${real} contains the store root ${root}`;
  const socket = RUNTIME_SOCKETS.find((path) => within(path, real) || within(real, path));
  if (socket) return `${real} ${real === socket ? 'is' : 'contains'} the container runtime socket ${socket}`;
  return undefined;
}

/** Throws for a sensitive bind source unless `allow` is set. */
export function checkBindSource(source: string, storeRoot: string, allow: boolean): void {
  if (allow) return;
  const reason = sensitiveBindReason(source, storeRoot);
  if (reason) {
    throw new MountSpecError(`refusing to bind-mount ${source}: ${reason} (allow it explicitly with --allow-sensitive-binds)`);
  }
}
