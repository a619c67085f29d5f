// The one metadata database of a store root: SQLite in WAL mode, shared safely
// by several processes. Every change that must be atomic runs in `transaction`.
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { StoreError } from './errors.js';
import { migrations } from './schema.js';

export type Db = Database.Database;
export type Statement = Database.Statement;

let sqliteAddon: string | undefined;

/**
 * Where better-sqlite3's native addon is, as its own loader (the bindings
 * package) would find it: given to it explicitly, so that better-sqlite3 also
 * works bundled into the CLI, where bindings would look next to the bundle.
 * The usual place, build/Release/, is taken directly; any other is left to
 * bindings to find.
 */
function sqliteAddonPath(): string {
  if (sqliteAddon) return sqliteAddon;
  const root = dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json'));
  const name = 'better_sqlite3.node';
  // bindings tries build/ and build/Debug/ before build/Release/.
  const release = join(root, 'build', 'Release', name);
  const usual = !existsSync(join(root, 'build', name)) && !existsSync(join(root, 'build', 'Debug', name)) && existsSync(release);
  sqliteAddon = usual ? release : (createRequire(join(root, 'package.json'))('bindings') as Bindings)({ bindings: name, module_root: root, path: true });
  return sqliteAddon;
}

type Bindings = (options: { bindings: string; module_root: string; path: true }) => string;

export function openDatabase(file: string): Db {
  const db = new Database(file, { nativeBinding: sqliteAddonPath() });
  db.pragma('journal_mode = WAL');
  // FULL: a committed transaction survives power loss, not only a crash.
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // Other processes may hold the write lock briefly; wait rather than fail.
  db.pragma('busy_timeout = 30000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  // Up to date, as at every open but a new store's or an upgrade's: no write
  // transaction, whose commit would cost this process its first syncs.
  if (db.pragma('user_version', { simple: true }) === migrations.length) return;
  transaction(db, () => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > migrations.length) {
      throw new StoreError(
        'ERR_STORE_SCHEMA',
        `the store's metadata has schema version ${version}, newer than this stratafs understands (${migrations.length}): upgrade stratafs`,
      );
    }
    for (const migration of migrations.slice(version)) db.exec(migration);
    db.pragma(`user_version = ${migrations.length}`);
  });
}

/**
 * Bounds for `id >= ? AND id < ?` that select the ids starting with `prefix`,
 * where ids go on in lowercase hex (all below "g"): the primary key's index
 * finds them, where LIKE (case-insensitive, so no index) reads every row.
 */
export function hexPrefixBounds(prefix: string): [string, string] {
  return [prefix, `${prefix}g`];
}

/** What must reach the disk before a connection's first synced commit (a session's marker). */
const beforeFirstSync = new WeakMap<Db, () => void>();

/**
 * Runs `fn` once, before the first commit made through `transaction` on db:
 * for what a power loss must not drop while keeping that commit. (A statement
 * committed on its own, outside `transaction`, does not run it.)
 */
export function beforeFirstSyncedCommit(db: Db, fn: () => void): void {
  beforeFirstSync.set(db, fn);
}

/** Runs `fn` in a write transaction taken up front (BEGIN IMMEDIATE), so reads inside it are not stale. */
export function transaction<T>(db: Db, fn: () => T): T {
  const first = beforeFirstSync.get(db);
  if (first && !db.inTransaction) {
    first();
    beforeFirstSync.delete(db);
  }
  return db.transaction(fn).immediate();
}

/**
 * Runs a write without waiting for it to reach the disk: for state that is
 * rebuilt after a crash anyway (mount counts, staging bookkeeping). WAL keeps
 * it atomic and ordered; a process crash keeps it; only a power loss can drop
 * it, and the next durable commit carries it to disk with its own.
 */
export function relaxed<T>(db: Db, fn: () => T): T {
  const { normal, full } = synchronousPragmas(db);
  normal.run();
  try {
    return db.transaction(fn).immediate();
  } finally {
    full.run();
  }
}

const pragmas = new WeakMap<Db, { normal: Statement; full: Statement }>();

/** The two pragmas `relaxed` switches between, prepared once per connection (db.pragma compiles them on every call). */
function synchronousPragmas(db: Db): { normal: Statement; full: Statement } {
  let prepared = pragmas.get(db);
  if (!prepared) {
    prepared = { normal: db.prepare('PRAGMA synchronous = NORMAL'), full: db.prepare('PRAGMA synchronous = FULL') };
    pragmas.set(db, prepared);
  }
  return prepared;
}
