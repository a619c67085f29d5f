// Overlay mounts with 1 to 500 lower layers, and the running kernel's overlay features.
import { resolve } from 'node:path';

import { native, withCallerStack } from './binding.js';

export type RedirectDir = 'on' | 'off' | 'follow' | 'nofollow';

/**
 * How the layers reach the kernel: 'lowerdir+' is fsopen with one fsconfig per
 * layer (Linux 6.8+; no length limit). 'legacy' is mount(2) with one option
 * string of at most a page; past that, lowers are named by fd numbers relative
 * to /proc/self/fd (about 4 bytes each). 'auto' picks lowerdir+ when the kernel
 * has it.
 */
export type OverlayMethod = 'auto' | 'lowerdir+' | 'legacy';

export interface OverlayOptions {
  /** Lower dirs, top-most first (overlay's own order); 1 to 500. */
  lowers: readonly string[];
  /** Upper and work dirs, both or neither; neither gives a read-only overlay. */
  upper?: string;
  work?: string;
  index?: boolean;
  metacopy?: boolean;
  redirectDir?: RedirectDir;
  volatile?: boolean;
  userxattr?: boolean;
  /** Other overlay options, added after the named ones; `true` sets a flag option. */
  extraOptions?: Readonly<Record<string, string | true>>;
  method?: OverlayMethod;
}

export interface OverlayMountResult {
  method: 'lowerdir+' | 'legacy';
  /** Layers passed as fds rather than paths (see OverlayMethod). */
  layersByFd: number;
}

// Resolves relative paths; anything else is passed on for the binding to reject.
function absolute(path: string): string {
  return typeof path === 'string' && path !== '' ? resolve(path) : path;
}

function onOff(value: boolean): string {
  return value ? 'on' : 'off';
}

/** Mounts an overlay on `target`. Relative paths are resolved against the cwd. */
export async function mountOverlay(target: string, options: OverlayOptions): Promise<OverlayMountResult> {
  const named: Record<string, string | true> = {};
  if (options.index !== undefined) named.index = onOff(options.index);
  if (options.metacopy !== undefined) named.metacopy = onOff(options.metacopy);
  if (options.redirectDir !== undefined) named.redirect_dir = options.redirectDir;
  if (options.volatile) named.volatile = true;
  if (options.userxattr) named.userxattr = true;
  for (const key of Object.keys(options.extraOptions ?? {})) {
    if (key in named) throw new TypeError(`Overlay option "${key}" is given twice`);
  }
  if (!Array.isArray(options.lowers)) throw new TypeError('The "lowers" option must be an array');
  return withCallerStack(
    native.mountOverlay(
      absolute(target),
      options.lowers.map(absolute),
      options.upper === undefined ? null : absolute(options.upper),
      options.work === undefined ? null : absolute(options.work),
      { ...named, ...options.extraOptions },
      options.method ?? 'auto',
    ),
  );
}

export interface OverlayFeatures {
  /** overlay can be mounted at all (fsopen("overlay") works). */
  available: boolean;
  /**
   * The kernel checks each option as it is set (overlay's own fs_context, 6.5+).
   * When false, index/metacopy/redirectDir come from the module parameters and
   * volatile/userxattr read false because they cannot be probed without a mount.
   */
  paramsChecked: boolean;
  lowerdirPlus: boolean;
  datadirPlus: boolean;
  /** Layers may be given as fds (FSCONFIG_SET_FD, 6.13+). */
  layersByFd: boolean;
  metacopy: boolean;
  index: boolean;
  redirectDir: boolean;
  volatile: boolean;
  userxattr: boolean;
  /** Lower layers one overlay can stack: counted where lowerdir+ exists, else the kernel's 500. */
  maxLowers: number;
  /** /sys/module/overlay/parameters/* (the defaults for mounts that don't set them). */
  moduleParams: Readonly<Record<string, string>>;
}

/** What the running kernel's overlayfs supports; probed once per process, without mounting. */
export function probeOverlayFeatures(): OverlayFeatures {
  const features = native.probeOverlayFeatures();
  // Counted (some 500 fsconfig calls) only where it is read: most commands never do.
  return Object.defineProperty(features, 'maxLowers', { enumerable: true, get: () => native.overlayMaxLowers() }) as OverlayFeatures;
}
