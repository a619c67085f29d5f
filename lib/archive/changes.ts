// The A/C/D list `docker diff` prints, read from an overlay upper directory
// rather than by comparing whole trees. Upper holds only what the container
// changed: whiteouts (0/0 character devices) for deletions, opaque directories
// for directories deleted and recreated, redirect xattrs for renamed
// directories, metacopy xattrs for files whose data still lives below.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { getXattrSync } from '../native/fs.js';

export type ChangeKind = 'A' | 'C' | 'D';

export interface Change {
  kind: ChangeKind;
  /** Absolute inside the container, as docker prints it: "/etc/hosts". */
  path: string;
}

function xattr(path: string, name: string): string | undefined {
  try {
    return getXattrSync(path, name).toString();
  } catch {
    return undefined;
  }
}

export function hasXattr(path: string, name: string): boolean {
  return xattr(path, name) !== undefined;
}

export function isWhiteout(stat: { isCharacterDevice(): boolean; rdev: number }): boolean {
  return stat.isCharacterDevice() && stat.rdev === 0;
}

export const isOpaque = (dir: string) => xattr(dir, 'trusted.overlay.opaque') === 'y';
export const redirectOf = (dir: string) => xattr(dir, 'trusted.overlay.redirect');

async function lstatOrNull(path: string) {
  return lstat(path).catch(() => null);
}

/**
 * Whether `rel` exists in the stack of lower directories (top-most first):
 * the top-most lower that has it decides, unless a whiteout or an opaque
 * ancestor in a higher lower hides it.
 */
export async function existsBelow(lowers: readonly string[], rel: string): Promise<boolean> {
  const parts = rel.split('/').filter(Boolean);
  for (const lower of lowers) {
    const stat = await lstatOrNull(join(lower, rel));
    if (stat) return !isWhiteout(stat);
    // An opaque ancestor (or a whiteout of one) in this lower hides everything below it.
    for (let i = parts.length - 1; i > 0; i--) {
      const ancestor = join(lower, ...parts.slice(0, i));
      const ancestorStat = await lstatOrNull(ancestor);
      if (!ancestorStat) continue;
      if (isWhiteout(ancestorStat) || !ancestorStat.isDirectory() || isOpaque(ancestor)) return false;
    }
  }
  return false;
}

async function sortedNames(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

/**
 * Lists the changes of an overlay upper directory against its lowers.
 * `view` is a directory showing the merged tree (needed to list what lies in a
 * renamed directory); without it, renamed directories list only their own entry.
 */
export async function upperChanges(upper: string, lowers: readonly string[], view?: string): Promise<Change[]> {
  const changes: Change[] = [];

  async function addAll(rel: string): Promise<void> {
    changes.push({ kind: 'A', path: rel });
    if (!view) return;
    const stat = await lstatOrNull(join(view, rel));
    if (stat?.isDirectory()) for (const name of await sortedNames(join(view, rel))) await addAll(`${rel}/${name}`);
  }

  async function walk(relDir: string, hiddenBelow: boolean): Promise<void> {
    const names = await sortedNames(join(upper, relDir));
    for (const name of names) {
      const rel = `${relDir}/${name}`;
      const path = join(upper, rel);
      const stat = await lstat(path);
      if (isWhiteout(stat)) {
        changes.push({ kind: 'D', path: rel });
        continue;
      }
      const below = !hiddenBelow && (await existsBelow(lowers, rel));
      if (stat.isDirectory() && redirectOf(path) !== undefined) {
        await addAll(rel); // a renamed directory: everything in it is at a new path
        continue;
      }
      changes.push({ kind: below ? 'C' : 'A', path: rel });
      if (!stat.isDirectory()) continue;
      // Below an opaque directory, what the lowers held counts as deleted
      // unless the container made it again (then it is changed, not added).
      if (below && isOpaque(path)) await deletedUnderOpaque(rel, new Set(await sortedNames(path)));
      await walk(rel, !below);
    }
  }

  // An opaque directory hides all it held below: each such entry was deleted.
  async function deletedUnderOpaque(rel: string, kept: Set<string>): Promise<void> {
    const seen = new Set<string>();
    for (const lower of lowers) {
      for (const name of await sortedNames(join(lower, rel))) {
        if (seen.has(name) || kept.has(name)) continue;
        seen.add(name);
        if (await existsBelow(lowers, `${rel}/${name}`)) changes.push({ kind: 'D', path: `${rel}/${name}` });
      }
      if (isOpaque(join(lower, rel))) break;
    }
  }

  await walk('', false);
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
