// The A/C/D list `docker diff` prints, read from an overlay upper directory
// rather than by comparing whole trees. Upper holds only what the container
// changed: whiteouts (0/0 character devices) for deletions, opaque directories
// for directories deleted and recreated, redirect xattrs for renamed
// directories, metacopy xattrs for files whose data still lives below.
// Its calls are synchronous: an upper directory holds thousands of small
// entries, and a thread-pool round trip per lstat costs more than the lstat.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { getXattrSync, listXattrsSync } from '../native/fs.js';

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

/** Lists rather than gets: absent is the common case, and a failed get costs an exception. */
export function hasXattr(path: string, name: string): boolean {
  try {
    return listXattrsSync(path).includes(name);
  } catch {
    return false;
  }
}

export function isWhiteout(stat: { isCharacterDevice(): boolean; rdev: number }): boolean {
  return stat.isCharacterDevice() && stat.rdev === 0;
}

export const isOpaque = (dir: string) => xattr(dir, 'trusted.overlay.opaque') === 'y';
export const redirectOf = (dir: string) => xattr(dir, 'trusted.overlay.redirect');

function lstatOrNull(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

/**
 * Whether `rel` exists in the stack of lower directories (top-most first):
 * the top-most lower that has it decides, unless a whiteout or an opaque
 * ancestor in a higher lower hides it.
 */
function existsBelow(lowers: readonly string[], rel: string): boolean {
  const parts = rel.split('/').filter(Boolean);
  for (const lower of lowers) {
    const stat = lstatOrNull(join(lower, rel));
    if (stat) return !isWhiteout(stat);
    // An opaque ancestor (or a whiteout of one) in this lower hides everything below it.
    for (let i = parts.length - 1; i > 0; i--) {
      const ancestor = join(lower, ...parts.slice(0, i));
      const ancestorStat = lstatOrNull(ancestor);
      if (!ancestorStat) continue;
      if (isWhiteout(ancestorStat) || !ancestorStat.isDirectory() || isOpaque(ancestor)) return false;
    }
  }
  return false;
}

function sortedNames(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/**
 * Lists the changes of an overlay upper directory against its lowers.
 * `view` is a directory showing the merged tree (needed to list what lies in a
 * renamed directory); without it, renamed directories list only their own entry.
 */
export function upperChanges(upper: string, lowers: readonly string[], view?: string): Change[] {
  const changes: Change[] = [];

  function addAll(rel: string): void {
    changes.push({ kind: 'A', path: rel });
    if (!view) return;
    const stat = lstatOrNull(join(view, rel));
    if (stat?.isDirectory()) for (const name of sortedNames(join(view, rel))) addAll(`${rel}/${name}`);
  }

  function walk(relDir: string, hiddenBelow: boolean): void {
    const names = sortedNames(join(upper, relDir));
    for (const name of names) {
      const rel = `${relDir}/${name}`;
      const path = join(upper, rel);
      const stat = lstatSync(path);
      if (isWhiteout(stat)) {
        changes.push({ kind: 'D', path: rel });
        continue;
      }
      const below = !hiddenBelow && existsBelow(lowers, rel);
      if (stat.isDirectory() && redirectOf(path) !== undefined) {
        addAll(rel); // a renamed directory: everything in it is at a new path
        continue;
      }
      changes.push({ kind: below ? 'C' : 'A', path: rel });
      if (!stat.isDirectory()) continue;
      // Below an opaque directory, what the lowers held counts as deleted
      // unless the container made it again (then it is changed, not added).
      if (below && isOpaque(path)) deletedUnderOpaque(rel, new Set(sortedNames(path)));
      walk(rel, !below);
    }
  }

  // An opaque directory hides all it held below: each such entry was deleted.
  function deletedUnderOpaque(rel: string, kept: Set<string>): void {
    const seen = new Set<string>();
    for (const lower of lowers) {
      for (const name of sortedNames(join(lower, rel))) {
        if (seen.has(name) || kept.has(name)) continue;
        seen.add(name);
        if (existsBelow(lowers, `${rel}/${name}`)) changes.push({ kind: 'D', path: `${rel}/${name}` });
      }
      if (isOpaque(join(lower, rel))) break;
    }
  }

  walk('', false);
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
