// Build secrets (RUN --mount=type=secret,id=NAME): the host file is bind-mounted
// read-only at its target for that one step. Only the mount point is ever
// made in the container layer, and it is removed again before the commit, so
// the secret reaches no layer.
import { rm, rmdir } from 'node:fs/promises';
import { posix } from 'node:path';

import { mount, unmount } from '../native/mount.js';
import { openInTree } from '../native/resolve.js';
import { pathInTree } from './copy.js';

export interface SecretMount {
  id: string;
  /** Where it appears inside the container: /run/secrets/<id> by default. */
  target: string;
  /** Fail when the build was given no such secret (otherwise the step runs without it). */
  required: boolean;
}

export async function withSecrets<T>(
  rootfs: string,
  mounts: readonly SecretMount[],
  secrets: Readonly<Record<string, string>>,
  fn: () => Promise<T>,
): Promise<T> {
  // What was made for the mounts, removed in reverse order afterwards.
  const made: Array<{ path: string; kind: 'mount' | 'file' | 'directory' }> = [];
  try {
    for (const secret of mounts) {
      const source = secrets[secret.id];
      if (source === undefined) {
        if (secret.required) throw new Error(`secret ${secret.id} is required but was not given (--secret id=${secret.id},src=FILE)`);
        continue;
      }
      const parts = posix.normalize(secret.target).split('/').filter(Boolean);
      for (let i = 1; i < parts.length; i++) {
        const dir = `/${parts.slice(0, i).join('/')}`;
        if ((await pathInTree(rootfs, dir)) === undefined) made.push({ path: (await pathInTree(rootfs, dir, true))!, kind: 'directory' });
      }
      let target = await pathInTree(rootfs, secret.target);
      if (target === undefined) {
        await (await openInTree(rootfs, secret.target, { create: true, kind: 'file' })).close();
        target = (await pathInTree(rootfs, secret.target))!;
        made.push({ path: target, kind: 'file' });
      }
      await mount(target, { source, flags: ['bind'] });
      made.push({ path: target, kind: 'mount' });
      await mount(target, { flags: ['remount', 'bind', 'rdonly', 'nosuid', 'nodev', 'noexec'] });
    }
    return await fn();
  } finally {
    for (const { path, kind } of made.reverse()) {
      if (kind === 'mount') await unmount(path, ['nofollow']);
      else if (kind === 'file') await rm(path, { force: true });
      else await rmdir(path).catch(() => {}); // the step may have put files there: they stay, as it made them
    }
  }
}
