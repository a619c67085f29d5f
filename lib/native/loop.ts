// Loop block devices: attach a backing file, detach, status, list.
import { close } from 'node:fs';
import { promisify } from 'node:util';

import { native, withCallerStack } from './binding.js';
import type { NativeLoopStatus } from './types.js';

const closeFd = promisify(close);

export interface LoopOptions {
  readOnly?: boolean;
  /** Detach when the last holder closes the device (see LoopDevice.close). */
  autoclear?: boolean;
  directIo?: boolean;
  /** Where the device starts in the backing file, in bytes. */
  offset?: number;
  /** The device's size in bytes; 0 or absent: up to the end of the file. */
  sizeLimit?: number;
  /** The logical block size (512 to 65536, a power of two); absent: 512. */
  blockSize?: number;
}

export type LoopStatus = NativeLoopStatus;

/**
 * An attached loop device, held open by this handle. With autoclear the
 * kernel detaches the device when its last holder closes it, so mount it
 * (the mount then holds it) before `close()`.
 */
export interface LoopDevice extends AsyncDisposable {
  readonly device: string;
  readonly number: number;
  /** Closes this handle's fd (once; later calls do nothing). */
  close(): Promise<void>;
}

/** Attaches `file` to a free loop device (LOOP_CONFIGURE; no partition scan). */
export async function attachLoop(file: string, options: LoopOptions = {}): Promise<LoopDevice> {
  const { device, number, fd } = await withCallerStack(native.loopAttach(file, { ...options }));
  let open = true;
  const closeOnce = async (): Promise<void> => {
    if (!open) return;
    open = false;
    await closeFd(fd);
  };
  return { device, number, close: closeOnce, [Symbol.asyncDispose]: closeOnce };
}

function devicePath(device: string | number): string {
  return typeof device === 'number' ? `/dev/loop${device}` : device;
}

/** LOOP_CLR_FD; a device still in use is detached at its last close. ENXIO if not attached. */
export async function detachLoop(device: string | number): Promise<void> {
  return withCallerStack(native.loopDetach(devicePath(device)));
}

/** LOOP_GET_STATUS64; ENXIO if nothing is attached. */
export async function loopStatus(device: string | number): Promise<LoopStatus> {
  return withCallerStack(native.loopStatus(devicePath(device)));
}

/** Every attached loop device with its backing file, by number (from sysfs). */
export async function listLoops(): Promise<LoopStatus[]> {
  return withCallerStack(native.loopList());
}
