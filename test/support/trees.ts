// Small file trees and the layer archives GNU tar makes of them.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

/** A digest of a whole tree: names, types, modes, owners, devices, mtimes and contents. */
export function treeDigest(dir: string): string {
  const hash = createHash('sha256');
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = join(dir, rel, name);
      const stat = lstatSync(path);
      hash.update(`${rel}/${name} ${stat.mode} ${stat.uid} ${stat.gid} ${stat.rdev} ${stat.mtimeMs}\n`);
      if (stat.isFile()) hash.update(readFileSync(path));
      if (stat.isDirectory()) walk(`${rel}/${name}`);
    }
  };
  walk('');
  return hash.digest('hex');
}
