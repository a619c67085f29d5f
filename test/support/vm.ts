// For tests that also run in the UML guest of `npm run test:vm` (kernel 6.1):
// whether they are there, and probes for the features 6.1 lacks, so a test
// can skip with the reason (requireFeature) instead of failing.
import { closeSync, constants, openSync, rmSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';

import { setXattrSync } from '../../lib/native/fs.js';

/** True inside scripts/vm-run (which sets STRATA_VM=1). */
export const inVm = process.env.STRATA_VM === '1';

/** Whether the running kernel is at least `major.minor`. */
export function kernelAtLeast(major: number, minor: number): boolean {
  const [have = 0, haveMinor = 0] = release().split('.').map((n) => parseInt(n, 10));
  return have > major || (have === major && haveMinor >= minor);
}

/** Whether files in `dir` take user.* xattrs (tmpfs: since Linux 6.6). */
export function userXattrsWork(dir: string): boolean {
  const probe = join(dir, `.strata-xattr-probe-${process.pid}`);
  writeFileSync(probe, '');
  try {
    setXattrSync(probe, 'user.strata-probe', 'x');
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EOPNOTSUPP') return false;
    throw error;
  } finally {
    rmSync(probe, { force: true });
  }
}

/** Whether files in `dir` open with O_DIRECT (tmpfs: since Linux 6.6). */
export function directIoWorks(dir: string): boolean {
  const probe = join(dir, `.strata-direct-probe-${process.pid}`);
  try {
    closeSync(openSync(probe, constants.O_RDWR | constants.O_CREAT | constants.O_DIRECT));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw error;
  } finally {
    rmSync(probe, { force: true });
  }
}
