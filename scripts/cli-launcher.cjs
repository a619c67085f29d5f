#!/usr/bin/env node
// The installed `strata` command (copied to dist/cli/strata.cjs by
// scripts/bundle-cli.mjs): runs the CLI bundle, strata-bundle.cjs, from V8's
// code cache when there is one. Node 20 has no compile cache of its own; the
// bundle's half megabyte is otherwise parsed again by every command, and the
// functions a command runs compiled again. The cache is only an optimization:
// missing, stale, rejected by V8 (another Node, other V8 flags) or unwritable
// (a read-only install), the bundle is compiled from source as it would be
// without it.
'use strict';
const { closeSync, fstatSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, accessSync, constants } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { createRequire, wrap } = require('node:module');

// The bundle's sha256, written in by scripts/bundle-cli.mjs.
const BUNDLE_SHA256 = '@BUNDLE_SHA256@';
const bundle = join(__dirname, 'strata-bundle.cjs');
const cacheFile = join(__dirname, '.strata-bundle.v8cache');

const fd = openSync(bundle, 'r');
let source;
let stat;
try {
  stat = fstatSync(fd);
  source = readFileSync(fd, 'utf8');
} finally {
  closeSync(fd);
}
// V8 checks a cache against the source's length only: the key names this
// very bundle (its content, and the file as it is, should it be edited by
// hand) and the Node that made the cache.
const key = `${BUNDLE_SHA256} ${stat.size} ${stat.ino} ${stat.mtimeMs} ${process.version} ${process.arch}\n`;

let cachedData;
try {
  const data = readFileSync(cacheFile);
  if (data.length > key.length && data.toString('latin1', 0, key.length) === key) cachedData = data.subarray(key.length);
} catch {
  // No cache yet, or an unreadable one: compile from source.
}

const script = new Script(wrap(source), { filename: bundle, cachedData });
if (cachedData === undefined || script.cachedDataRejected) {
  // Written at exit, so it holds the functions this command compiled too.
  process.once('exit', () => {
    const temporary = `${cacheFile}.${process.pid}`;
    try {
      accessSync(__dirname, constants.W_OK);
      writeFileSync(temporary, Buffer.concat([Buffer.from(key, 'latin1'), script.createCachedData()]));
      renameSync(temporary, cacheFile);
    } catch {
      try {
        unlinkSync(temporary);
      } catch {
        // Never written.
      }
    }
  });
}
const module_ = { exports: {}, filename: bundle, id: bundle };
script.runInThisContext()(module_.exports, createRequire(bundle), module_, bundle, __dirname);
