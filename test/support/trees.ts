// Small file trees and the layer archives GNU tar makes of them.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Writes files (path -> content) below dir; a trailing '/' makes a directory. */
export function writeTree(dir: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    const full = join(dir, path);
    if (path.endsWith('/')) {
      mkdirSync(full, { recursive: true });
    } else {
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, content);
    }
  }
}

/** A layer tar of dir's contents, as `docker save` would hold it (paths relative, sorted, numeric owners). */
export function tarOf(dir: string, out: string, extra: string[] = []): string {
  execFileSync('tar', ['--format=pax', '--sort=name', '--numeric-owner', ...extra, '-C', dir, '-cf', out, '.']);
  return out;
}
