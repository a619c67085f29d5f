// What creating a container with mounts needs first: every check made before
// anything is created, then the volumes its mounts name made (an anonymous
// volume for a target-only mount), with a rollback if the create fails.
import { existsSync } from 'node:fs';

import type { VolumeStore } from '../store/volumes.js';
import type { ContainerMount } from './attach.js';
import { checkBindSource } from './safety.js';
import { MountSpecError, validateMountSet, type MountSpec } from './spec.js';

export interface PreparedMounts {
  mounts: ContainerMount[];
  /** Removes the volumes the preparation created. */
  rollback(): Promise<void>;
}

export async function prepareMounts(
  volumes: VolumeStore,
  specs: readonly MountSpec[],
  options: { owner: string | null; allowSensitiveBinds: boolean },
): Promise<PreparedMounts> {
  validateMountSet(specs);
  for (const spec of specs) {
    if (spec.type === 'bind') {
      checkBindSource(spec.source, volumes.storeRoot, options.allowSensitiveBinds);
      // --mount requires the source; -v creates it when the container is mounted, as Docker does.
      if (!spec.createSource && !existsSync(spec.source)) {
        throw new MountSpecError(`invalid mount config for type "bind": bind source path does not exist: ${spec.source}`);
      }
    } else if (spec.type === 'volume' && spec.source !== '' && volumes.get(spec.source)) {
      volumes.checkAccess(spec.source, options.owner);
    }
  }
  const created: string[] = [];
  const rollback = async () => {
    for (const name of created.reverse()) await volumes.remove(name, { force: true });
  };
  const mounts: ContainerMount[] = [];
  try {
    for (const spec of specs) {
      if (spec.type !== 'volume') {
        mounts.push({ spec, volume: null, allowSensitive: spec.type === 'bind' && options.allowSensitiveBinds });
        continue;
      }
      const existed = spec.source !== '' && volumes.get(spec.source) !== undefined;
      const volume = await volumes.create(spec.source === '' ? undefined : spec.source, {
        labels: spec.labels,
        options: spec.driverOptions,
        ...(options.owner !== null && { owner: options.owner }),
        allowSensitiveBinds: options.allowSensitiveBinds,
      });
      if (!existed) created.push(volume.name);
      mounts.push({ spec, volume: volume.name, allowSensitive: false });
    }
  } catch (error) {
    await rollback();
    throw error;
  }
  return { mounts, rollback };
}
