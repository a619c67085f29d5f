// A small base image for build tests: static busybox with its applets, a
// root and an "app" user, and the directories a container mounts over.
import { chmodSync, chownSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { importRootfs } from '../../lib/images/import.js';
import { rootfsArchive } from '../../lib/images/rootfs.js';
import type { Image } from '../../lib/store/images.js';
import type { Store } from '../../lib/store/store.js';
import { type Cleanups, scratchDir } from './fixtures.js';

export const BUSYBOX = '/bin/busybox';

export function busyboxTree(cleanups: Cleanups): string {
  const dir = scratchDir(cleanups, 'busybox-base');
  for (const sub of ['bin', 'etc', 'dev', 'proc', 'sys', 'tmp', 'root', 'home/app', 'run']) mkdirSync(join(dir, sub), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  chownSync(join(dir, 'home/app'), 1000, 1000);
  copyFileSync(BUSYBOX, join(dir, 'bin/busybox'));
  for (const applet of execFileSync(BUSYBOX, ['--list']).toString().split('\n')) {
    if (applet && applet !== 'busybox') symlinkSync('busybox', join(dir, 'bin', applet));
  }
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\napp:x:1000:\nstaff:x:50:\n');
  return dir;
}

/** Imports the busybox tree as the image `tag`. */
export async function busyboxImage(store: Store, cleanups: Cleanups, tag = 'base'): Promise<Image> {
  const tree = busyboxTree(cleanups);
  return importRootfs(store, rootfsArchive(tree), { source: tree, tag });
}
