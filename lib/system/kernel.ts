// Facts about the running kernel read from /proc and /sys: cheap, no probes.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { release } from 'node:os';

export function kernelVersion(): string {
  return release();
}

/** Filesystem types the kernel can mount now (built in or loaded). */
export function kernelFilesystems(): Set<string> {
  const text = readFileSync('/proc/filesystems', 'utf8');
  return new Set(text.split('\n').map((line) => line.split('\t').pop()?.trim() ?? '').filter(Boolean));
}

/** Whether a kernel module could be loaded on demand (it is on disk for this kernel). */
export function moduleAvailable(name: string): boolean {
  const dir = `/lib/modules/${release()}`;
  if (!existsSync(`${dir}/modules.dep`)) return false;
  const pattern = new RegExp(`/${name.replace(/_/g, '[_-]')}\\.ko(\\.[a-z]+)?:`);
  return pattern.test(readFileSync(`${dir}/modules.dep`, 'utf8'));
}

/** Misc character devices the kernel registered (device-mapper, loop-control...). */
export function miscDevices(): Set<string> {
  const text = readFileSync('/proc/misc', 'utf8');
  return new Set(text.split('\n').map((line) => line.trim().split(/\s+/)[1] ?? '').filter(Boolean));
}

export function loopDeviceCount(): number {
  return readdirSync('/sys/block').filter((name) => name.startsWith('loop')).length;
}
