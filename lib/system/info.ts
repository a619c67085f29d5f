// What `strata info` reports: the kernel's storage features, the filesystem
// under the store root, and which storage drivers can run on this host, each
// with the reason when one cannot.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { probeOverlayFeatures, type OverlayFeatures } from '../native/overlay.js';
import { Store } from '../store/store.js';
import { kernelFilesystems, kernelVersion, miscDevices, moduleAvailable } from './kernel.js';
import { probeBackingFilesystem, type BackingFilesystem } from './probes.js';

export interface DriverAvailability {
  name: string;
  available: boolean;
  /** Why it can or cannot run here, in a phrase. */
  reason: string;
}

export interface StoreDriverInfo {
  name: string;
  status: Array<[string, string]>;
  images: number;
  layers: number;
  containers: number;
  volumes: number;
}

export interface HostInfo {
  kernelVersion: string;
  root: string;
  /** The driver of the store at the root, if one exists there. */
  storageDriver: StoreDriverInfo | null;
  backingFilesystem: BackingFilesystem;
  overlay: OverlayFeatures;
  drivers: DriverAvailability[];
}

function driverAvailability(backing: BackingFilesystem, overlay: OverlayFeatures): DriverAvailability[] {
  const filesystems = kernelFilesystems();
  const overlay2 = !overlay.available
    ? 'no overlay filesystem in this kernel'
    : !backing.dType
      ? `the ${backing.type} filesystem under the root lacks d_type, which overlay needs`
      : backing.type === 'overlay'
        ? 'the root is itself on overlayfs, which cannot hold overlay upper directories'
        : null;
  const btrfs = !(filesystems.has('btrfs') || moduleAvailable('btrfs'))
    ? 'no btrfs in this kernel'
    : backing.type !== 'btrfs'
      ? `the root is on ${backing.type}, not btrfs`
      : null;
  const devicemapper =
    miscDevices().has('device-mapper') || moduleAvailable('dm_thin_pool')
      ? null
      : 'needs device-mapper (not in this kernel; run the VM suite)';
  return [
    { name: 'overlay2', available: overlay2 === null, reason: overlay2 ?? `overlayfs on ${backing.type}, up to ${overlay.maxLowers} layers` },
    { name: 'btrfs', available: btrfs === null, reason: btrfs ?? 'subvolume snapshots' },
    { name: 'devicemapper', available: devicemapper === null, reason: devicemapper ?? 'device-mapper thin provisioning' },
    { name: 'vfs', available: true, reason: backing.reflink ? 'full copies, sharing extents by reflink' : `full copies (${backing.type} has no reflinks)` },
    { name: 'aufs', available: false, reason: 'aufs is not in this kernel (it was never merged upstream); use overlay2' },
    { name: 'zfs', available: false, reason: 'zfs is not in this kernel (it is an out-of-tree module); use btrfs or overlay2' },
  ];
}

async function storeDriverInfo(root: string, driver: string | undefined): Promise<StoreDriverInfo | null> {
  if (!existsSync(join(root, 'image', 'metadata.db'))) return null;
  const store = await Store.open({ root, ...(driver && { driver }) });
  try {
    return {
      name: store.driver.name,
      status: store.driverStatus,
      images: store.images.list().length,
      layers: store.layers.list().length,
      containers: store.containers.list().length,
      volumes: store.volumes.list().length,
    };
  } finally {
    store.close();
  }
}

export async function collectHostInfo(root: string, driver?: string): Promise<HostInfo> {
  const overlay = probeOverlayFeatures();
  const backingFilesystem = await probeBackingFilesystem(root);
  return {
    kernelVersion: kernelVersion(),
    root,
    storageDriver: await storeDriverInfo(root, driver),
    backingFilesystem,
    overlay,
    drivers: driverAvailability(backingFilesystem, overlay),
  };
}
