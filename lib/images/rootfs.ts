// A whole directory tree as a tar: what `strata import DIR` turns into a
// layer and `strata export` writes of a container's merged root filesystem.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { Change } from '../archive/changes.js';
import { changesArchive } from '../archive/tar-writer.js';

/** Every entry below dir as an addition, each directory before its contents, in name order. */
async function entriesBelow(dir: string, rel = ''): Promise<Change[]> {
  const found: Change[] = [];
  const children = await readdir(join(dir, rel), { withFileTypes: true });
  children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    const path = `${rel}/${child.name}`;
    found.push({ kind: 'A', path });
    if (child.isDirectory()) found.push(...(await entriesBelow(dir, path)));
  }
  return found;
}

export async function* rootfsArchive(dir: string): AsyncGenerator<Buffer> {
  yield* changesArchive(dir, await entriesBelow(dir));
}
