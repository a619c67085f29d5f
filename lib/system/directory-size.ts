// Docker's directory.Size: what a directory's files take, as `system df` counts it.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Apparent bytes (st_size, not blocks) of everything below `dir` that is not
 * a directory, each inode once (hard links): whiteouts count 0, sparse files
 * their full length.
 */
export function directorySize(dir: string): number {
  const seen = new Set<number>();
  let total = 0;
  const walk = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) {
        walk(child);
        continue;
      }
      const stat = lstatSync(child);
      if (stat.size === 0 || (stat.nlink > 1 && seen.has(stat.ino))) continue;
      seen.add(stat.ino);
      total += stat.size;
    }
  };
  walk(dir);
  return total;
}
