// The A/C/D list for drivers without an upper directory (vfs, btrfs): the
// container's tree compared with its layer's, as Docker's naive diff does.
// An entry changed when its type, mode, owner, device, or (for non-
// directories) size or mtime differ, or its security.capability does; the
// parent directories of a change are listed as changed too.
import { lstat, readdir } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';

import { getXattrSync } from '../native/fs.js';
import type { Change } from './changes.js';

function capability(path: string): string | undefined {
  try {
    return getXattrSync(path, 'security.capability').toString('hex');
  } catch {
    return undefined;
  }
}

function differs(a: BigIntStats, b: BigIntStats, aPath: string, bPath: string): boolean {
  if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.rdev !== b.rdev) return true;
  if (!a.isDirectory() && (a.size !== b.size || a.mtimeNs !== b.mtimeNs)) return true;
  return capability(aPath) !== capability(bPath);
}

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

export async function treeChanges(current: string, base: string | null): Promise<Change[]> {
  const changes = new Map<string, Change>();
  const add = (kind: Change['kind'], path: string) => {
    changes.set(path, { kind, path });
    // parents of a change count as changed, so their modes travel with it
    for (let parent = path.slice(0, path.lastIndexOf('/')); parent; parent = parent.slice(0, parent.lastIndexOf('/'))) {
      if (!changes.has(parent)) changes.set(parent, { kind: 'C', path: parent });
    }
  };

  async function addTree(rel: string, root: string): Promise<void> {
    add('A', rel);
    const stat = await lstat(join(root, rel));
    if (stat.isDirectory()) for (const name of await names(join(root, rel))) await addTree(`${rel}/${name}`, root);
  }

  async function walk(rel: string): Promise<void> {
    const now = new Set(await names(join(current, rel)));
    const before = base === null ? new Set<string>() : new Set(await names(join(base, rel)));
    for (const name of before) if (!now.has(name)) add('D', `${rel}/${name}`);
    for (const name of now) {
      const path = `${rel}/${name}`;
      if (!before.has(name)) {
        await addTree(path, current);
        continue;
      }
      const a = await lstat(join(current, path), { bigint: true });
      const b = await lstat(join(base!, path), { bigint: true });
      const sameType = (a.mode & 0o170000n) === (b.mode & 0o170000n);
      if (!sameType) {
        add('C', path);
        if (a.isDirectory()) for (const child of await names(join(current, path))) await addTree(`${path}/${child}`, current);
        continue;
      }
      if (differs(a, b, join(current, path), join(base!, path))) add('C', path);
      if (a.isDirectory()) await walk(path);
    }
  }

  await walk('');
  return [...changes.values()].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}
