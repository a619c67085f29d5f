#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli/main.js) into dist/cli/strata-bundle.cjs
// and installs its launcher, scripts/cli-launcher.cjs, as dist/cli/strata.cjs,
// the `strata` command: the launcher runs the bundle from a V8 code cache.
// CommonJS on purpose: Node 20 starts a CommonJS bundle 20 to 40 ms sooner
// than the same code as an ES module, whose loader also runs every CommonJS
// dependency through its export lexer. Packages go into the bundle (no module
// resolution at start-up), but for those that find native code relative to
// their own place.
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

import { createRequire } from 'node:module';

import { build } from 'esbuild';

const bundle = 'dist/cli/strata-bundle.cjs';

// Built-in modules that a command loads when it first uses them rather than
// at start-up: each command needs a few (a no-change build none of
// child_process, zlib, streams...), and loading them all costs a start-up
// several milliseconds. The bundle imports them from a stand-in whose
// exports are getters that load the module on first use. Code that runs at
// start-up and uses one (a class extending Transform) loads it then, as before.
const lazyBuiltins = [
  'node:child_process',
  'node:crypto',
  'node:fs/promises',
  'node:os',
  'node:readline/promises',
  'node:stream',
  'node:stream/promises',
  'node:timers/promises',
  'node:zlib',
];
const require = createRequire(import.meta.url);
const lazyBuiltinsPlugin = {
  name: 'lazy-builtins',
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) =>
      lazyBuiltins.includes(args.path) && args.namespace !== 'lazy-builtin' ? { path: args.path, namespace: 'lazy-builtin' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      loader: 'js',
      contents: `let loaded;
const load = () => (loaded ??= require(${JSON.stringify(args.path)}));
for (const key of ${JSON.stringify(Object.keys(require(args.path)))}) Object.defineProperty(module.exports, key, { enumerable: true, get: () => load()[key] });
`,
    }));
  },
};
const result = await build({
  entryPoints: ['dist/cli/main.js'],
  bundle: true,
  write: false,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // better-sqlite3's JavaScript is bundled (lib/store/database.ts gives it its addon); bindings, which it
  // would otherwise load the addon with, and node-gyp-build find native code relative to themselves.
  external: ['bindings', 'node-gyp-build'],
  logLevel: 'warning',
  plugins: [lazyBuiltinsPlugin],
  // import.meta.url (the addon's and package.json's location) from the bundle's own path.
  define: { 'import.meta.url': '__strataModuleUrl' },
  banner: { js: "const __strataModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
// The launcher runs the bundle as a function body, where a #! line is a syntax error.
const code = result.outputFiles[0].text.replace(/^#!.*\n/, '');
// One character outside ASCII would make V8 hold the whole source as a
// two-byte string (twice the memory, slower to read and scan at every start).
const nonAscii = /[^\x00-\x7f]/.exec(code);
if (nonAscii) {
  const line = code.slice(0, nonAscii.index).split('\n').length;
  throw new Error(`the CLI bundle must be ASCII: line ${line} has "${nonAscii[0]}" (escape it in the source, as \\u${nonAscii[0].charCodeAt(0).toString(16).padStart(4, '0')})`);
}
writeFileSync(bundle, code);
const launcher = readFileSync('scripts/cli-launcher.cjs', 'utf8').replace('@BUNDLE_SHA256@', createHash('sha256').update(code).digest('hex'));
writeFileSync('dist/cli/strata.cjs', launcher);
chmodSync('dist/cli/strata.cjs', 0o755);
// A code cache of an earlier bundle would be rejected anyway; the next run writes a fresh one.
rmSync('dist/cli/.strata-bundle.v8cache', { force: true });
