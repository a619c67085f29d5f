// Root hooks: after the whole run, nothing the tests made may remain mounted
// or attached. Leftovers are released and the run fails, naming them.
import { readdirSync, readFileSync, rmSync } from 'node:fs';

import { unmount } from '../../lib/native/mount.js';
import { mountsBelow, testBase } from './fixtures.js';

function loopDevicesBacking(dir: string): string[] {
  const leaked: string[] = [];
  for (const name of readdirSync('/sys/block').filter((n) => n.startsWith('loop'))) {
    try {
      const backing = readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
      if (backing.startsWith(`${dir}/`)) leaked.push(`/dev/${name} (${backing})`);
    } catch {
      // not attached
    }
  }
  return leaked;
}

export const mochaHooks = {
  async afterAll(): Promise<void> {
    const mounts = mountsBelow(testBase);
    for (const point of mounts.reverse()) await unmount(point, ['detach']).catch(() => {});
    const loops = loopDevicesBacking(testBase);
    rmSync(testBase, { recursive: true, force: true });
    if (mounts.length > 0 || loops.length > 0) {
      throw new Error(`tests leaked mounts [${mounts.join(', ')}] and loop devices [${loops.join(', ')}]`);
    }
  },
};
