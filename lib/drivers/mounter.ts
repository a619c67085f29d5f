// Performs the mounts drivers describe.
import { bindMount } from '../native/mount-api.js';
import { mountOverlay } from '../native/overlay.js';
import type { MountSpec } from './driver.js';

export async function performMount(spec: MountSpec, target: string): Promise<void> {
  if (spec.type === 'bind') {
    await bindMount(spec.source, target, { readOnly: spec.readOnly });
    return;
  }
  await mountOverlay(target, {
    lowers: spec.lowers,
    ...(spec.upper !== undefined && { upper: spec.upper }),
    ...(spec.work !== undefined && { work: spec.work }),
    // index=off: with index on, a lower in use as another mount's upper fails with EBUSY
    index: false,
    redirectDir: spec.redirectDir ?? 'off',
    ...(spec.metacopy && { metacopy: true }),
    ...(spec.volatile && { volatile: true }),
  });
}
