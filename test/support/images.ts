// Loop-backed filesystem images for tests that need btrfs, xfs or ext4: a
// sparse file, mkfs, a loop device (autoclear) and a mount, all released on
// cleanup even when the test fails.
import { execFile } from 'node:child_process';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { attachLoop, detachLoop, loopStatus } from '../../lib/native/loop.js';
import { mount, unmount } from '../../lib/native/mount.js';
import { type Cleanups, scratchDir } from './fixtures.js';

const execFileAsync = promisify(execFile);

export type ImageFs = 'btrfs' | 'xfs' | 'ext4';

const MiB = 1024 * 1024;

const mkfs: Record<ImageFs, { command: string; args: readonly string[] }> = {
  btrfs: { command: 'mkfs.btrfs', args: ['-q'] },
  xfs: { command: 'mkfs.xfs', args: ['-q', '-m', 'reflink=1'] },
  ext4: { command: 'mkfs.ext4', args: ['-q', '-F'] },
};

// Above each mkfs's minimum (xfs refuses less than 300 MiB); the file is sparse.
const defaultSizes: Record<ImageFs, number> = { btrfs: 256 * MiB, xfs: 320 * MiB, ext4: 64 * MiB };

export interface ImageOptions {
  /** The image's size in bytes. */
  size?: number;
  /** More mkfs arguments, e.g. ['-O', '^filetype'] for an ext4 without d_type. */
  mkfsArgs?: readonly string[];
}

/** Detaches `device` only if it still backs `image` (autoclear usually did it already). */
export async function detachIfBacking(device: string, image: string): Promise<void> {
  const status = await loopStatus(device).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENXIO') return undefined;
    throw error;
  });
  if (status?.backingFile === image) await detachLoop(device);
}

/** A sparse file of `bytes` in `dir` attached to a loop device (a block device for a test), detached on cleanup. */
export async function sparseLoopDevice(cleanups: Cleanups, dir: string, name: string, bytes: number): Promise<string> {
  const file = join(dir, name);
  writeFileSync(file, '');
  truncateSync(file, bytes);
  const loop = await attachLoop(file);
  cleanups.defer(async () => {
    await loop.close();
    await detachLoop(loop.device);
  });
  return loop.device;
}

/**
 * Makes a `fstype` filesystem in a sparse file below testBase, mounts it
 * through a loop device and returns the mount directory. Cleanups unmount it,
 * detach the device and remove the file.
 */
export async function fsImage(cleanups: Cleanups, fstype: ImageFs, options: ImageOptions = {}): Promise<string> {
  const dir = scratchDir(cleanups, `${fstype}-image`);
  const image = join(dir, 'image');
  const mountPoint = join(dir, 'mnt');
  mkdirSync(mountPoint);
  writeFileSync(image, '');
  truncateSync(image, options.size ?? defaultSizes[fstype]);
  const { command, args } = mkfs[fstype];
  await execFileAsync(command, [...args, ...(options.mkfsArgs ?? []), image]);

  const loop = await attachLoop(image, { autoclear: true });
  cleanups.defer(() => detachIfBacking(loop.device, image));
  cleanups.defer(() => loop.close());
  await mount(mountPoint, { source: loop.device, fstype });
  cleanups.defer(() =>
    // A busy mount is still detached (so autoclear frees the device later), and the failure reported.
    unmount(mountPoint).catch(async (error: unknown) => {
      await unmount(mountPoint, ['detach']);
      throw error;
    }),
  );
  // The mount holds the device now; with autoclear, unmounting detaches it.
  await loop.close();
  return mountPoint;
}
