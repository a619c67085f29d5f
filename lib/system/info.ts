// What `strata info` reports: the kernel's storage features and which storage
// drivers can run on this host, each with the reason when one cannot.
import { kernelFilesystems, kernelVersion, miscDevices, moduleAvailable } from './kernel.js';

export interface DriverAvailability {
  name: string;
  available: boolean;
  /** Why it can or cannot run here, in a phrase. */
  reason: string;
}

export interface HostInfo {
  kernelVersion: string;
  root: string;
  filesystems: string[];
  drivers: DriverAvailability[];
}

function hasFilesystem(name: string, mounted: Set<string>): boolean {
  return mounted.has(name) || moduleAvailable(name);
}

export function collectHostInfo(root: string): HostInfo {
  const filesystems = kernelFilesystems();
  const misc = miscDevices();
  const drivers: DriverAvailability[] = [
    hasFilesystem('overlay', filesystems)
      ? { name: 'overlay2', available: true, reason: 'kernel overlayfs' }
      : { name: 'overlay2', available: false, reason: 'no overlay filesystem in this kernel' },
    hasFilesystem('btrfs', filesystems)
      ? { name: 'btrfs', available: true, reason: 'kernel btrfs (the store root must be on btrfs)' }
      : { name: 'btrfs', available: false, reason: 'no btrfs in this kernel' },
    misc.has('device-mapper') || moduleAvailable('dm_thin_pool')
      ? { name: 'devicemapper', available: true, reason: 'device-mapper thin provisioning' }
      : { name: 'devicemapper', available: false, reason: 'no device-mapper in this kernel' },
    { name: 'vfs', available: true, reason: 'full copies; works on any filesystem' },
    { name: 'aufs', available: false, reason: 'aufs is not in this kernel (never merged upstream); use overlay2' },
    { name: 'zfs', available: false, reason: 'zfs is not in this kernel (out-of-tree module); use btrfs or overlay2' },
  ];
  return { kernelVersion: kernelVersion(), root, filesystems: [...filesystems].sort(), drivers };
}
