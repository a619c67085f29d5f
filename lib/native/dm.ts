// Device-mapper through the ioctls of /dev/mapper/control: devices, tables,
// suspend/resume, target messages (thin-pool), without dmsetup or udev.
// createDevice makes /dev/mapper/<name> and removeDevice unlinks it.
// Errors are Node-style with syscall "ioctl", the DM command in `command` and
// the message, and the device name as `path`; for refused tables and
// messages the message ends with the kernel's logged reason.
import { native, withCallerStack } from './binding.js';
import type { NativeDmInfo, NativeDmTarget } from './types.js';

export type DmTarget = NativeDmTarget;
export type DmInfo = NativeDmInfo;

export interface DmTargetStatus {
  start: number;
  length: number;
  type: string;
  status: string;
}

export interface DmListedDevice {
  name: string;
  major: number;
  minor: number;
}

/** The kernel's device-mapper ioctl interface version, [major, minor, patch]. */
export async function dmVersion(): Promise<[number, number, number]> {
  return withCallerStack(native.dmVersion());
}

/** DM_DEV_CREATE: a device without a table (load one, then resume), and its node. */
export async function createDevice(name: string, options: { uuid?: string } = {}): Promise<DmInfo> {
  return withCallerStack(native.dmCreate(name, options.uuid ?? ''));
}

/** DM_TABLE_LOAD into the inactive slot; `resumeDevice` makes it live. */
export async function loadTable(
  name: string,
  targets: readonly DmTarget[],
  options: { readOnly?: boolean } = {},
): Promise<void> {
  return withCallerStack(native.dmLoadTable(name, targets.map((t) => ({ ...t })), options.readOnly ?? false));
}

/** DM_DEV_SUSPEND: waits for in-flight I/O and freezes a mounted filesystem. */
export async function suspendDevice(name: string): Promise<DmInfo> {
  return withCallerStack(native.dmSuspend(name));
}

/** Resumes the device, swapping in a loaded table if there is one. */
export async function resumeDevice(name: string): Promise<DmInfo> {
  return withCallerStack(native.dmResume(name));
}

/**
 * DM_DEV_REMOVE and unlinks the node. A device in use fails with EBUSY, unless
 * `deferred`: then the kernel removes it at its last close (`deferred: true`).
 */
export async function removeDevice(name: string, options: { deferred?: boolean } = {}): Promise<{ deferred: boolean }> {
  return withCallerStack(native.dmRemove(name, options.deferred ?? false));
}

/** DM_DEV_STATUS. */
export async function deviceStatus(name: string): Promise<DmInfo> {
  return withCallerStack(native.dmStatus(name));
}

/** DM_TABLE_STATUS: each target's status line (thin-pool: transaction id, used blocks...). */
export async function targetStatus(name: string): Promise<DmTargetStatus[]> {
  const { targets } = await withCallerStack(native.dmTableStatus(name, false));
  return targets.map(({ start, length, type, text }) => ({ start, length, type, status: text }));
}

/** DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG: the live table. */
export async function deviceTable(name: string): Promise<DmTarget[]> {
  const { targets } = await withCallerStack(native.dmTableStatus(name, true));
  return targets.map(({ start, length, type, text }) => ({ start, length, type, params: text }));
}

/**
 * DM_TARGET_MSG to the target at `sector` (default 0); resolves to its reply.
 * thin-pool: "create_thin N", "create_snap N ORIGIN", "delete N",
 * "reserve_metadata_snap", "release_metadata_snap", "set_transaction_id OLD NEW".
 */
export async function targetMessage(name: string, message: string, options: { sector?: number } = {}): Promise<string> {
  return withCallerStack(native.dmMessage(name, options.sector ?? 0, message));
}

/** DM_LIST_DEVICES. */
export async function listDevices(): Promise<DmListedDevice[]> {
  return withCallerStack(native.dmList());
}
