// Bundles a script (a test worker, the CLI) with esbuild so tests can start it
// many times quickly: plain node starts in a fraction of the time the tsx
// loader takes, which compiles every module again in each process (seconds
// each in the slow 6.1 guest).
// The bundle lives under node_modules/.cache, where its package imports
// resolve; import.meta.url is the native binding's, so it finds the addon.
import { buildSync } from 'esbuild';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const repo = join(import.meta.dirname, '../..');

/** Bundles `script` (a path from the repository's root); returns the bundle's path. */
export function bundleScript(script: string): string {
  const outfile = join(repo, 'node_modules/.cache/stratafs-tests', basename(script).replace(/\.ts$/, '.mjs'));
  buildSync({
    entryPoints: [join(repo, script)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'error',
    define: { 'import.meta.url': JSON.stringify(pathToFileURL(join(repo, 'lib/native/binding.ts')).href) },
  });
  return outfile;
}
