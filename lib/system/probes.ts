// Probes of the filesystem a store root lives on. The root may not exist yet:
// then its nearest existing ancestor, which it would be created on, is probed.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';

import { probeReflink } from '../native/clone.js';
import { statfs, supportsDType, type FsTypeName } from '../native/fs.js';

export function nearestExisting(path: string): string {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export interface BackingFilesystem {
  /** The directory actually probed. */
  probed: string;
  type: FsTypeName;
  dType: boolean;
  reflink: boolean;
}

export async function probeBackingFilesystem(root: string): Promise<BackingFilesystem> {
  const probed = nearestExisting(root);
  const [fs, dType, reflink] = await Promise.all([statfs(probed), supportsDType(probed), probeReflink(probed)]);
  return { probed, type: fs.typeName, dType, reflink };
}
