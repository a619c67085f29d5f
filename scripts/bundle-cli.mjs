#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli/main.js) into dist/cli/strata.cjs, the
// installed `strata` command. CommonJS on purpose: Node 20 starts a CommonJS
// bundle 20 to 40 ms sooner than the same code as an ES module, whose loader
// also runs every CommonJS dependency through its export lexer. Pure-JS
// packages go into the bundle (no module resolution at start-up); the ones
// that load native code from their own place stay outside.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/strata.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['better-sqlite3', 'node-gyp-build'],
  logLevel: 'warning',
  // import.meta.url (the addon's and package.json's location) from the bundle's own path.
  define: { 'import.meta.url': '__strataModuleUrl' },
  banner: { js: "const __strataModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
