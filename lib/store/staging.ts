// Directories being built or torn down, each owned by a live process. A row
// is written before its directory exists and deleted in the transaction that
// makes the directory part of the store (or after it is gone), so after a
// crash every leftover is listed here and the next open removes it.
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';

import { relaxed, type Db } from './database.js';

/** When a process started (clock ticks since boot): tells a live owner from a reused pid. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** This process's start time, recorded with what it owns. */
export const ownStart = processStart(process.pid) ?? '';

/** Whether the process that recorded (pid, pidStart) still runs. */
export function isLive(pid: number, pidStart: string): boolean {
  return processStart(pid) === pidStart;
}

export interface StagedRow {
  path: string;
  pid: number;
  pidStart: string;
}

export function stagedRows(db: Db): StagedRow[] {
  return db.prepare('SELECT path, pid, pid_start AS pidStart FROM staging').all() as StagedRow[];
}

/**
 * Registers a directory about to be made. Not synced: if a power loss drops
 * the row, the directory is an orphan with no metadata (fsck's to find), never
 * a half-made object the store believes in.
 */
export function beginStaging(db: Db, path: string): void {
  const insert = () =>
    db.prepare('INSERT INTO staging (path, pid, pid_start, created) VALUES (?, ?, ?, ?)').run(path, process.pid, ownStart, new Date().toISOString());
  // Inside a caller's transaction the row shares its fate (and durability).
  if (db.inTransaction) insert();
  else relaxed(db, insert);
}

/** Forgets a staged directory; inside the transaction that makes it part of the store, or after it is gone. */
export function endStaging(db: Db, path: string): void {
  db.prepare('DELETE FROM staging WHERE path = ?').run(path);
}

/** How a driver removes what it keeps at a path (a btrfs subvolume is not removed by rm). */
export type RemovePath = (path: string) => Promise<void>;

const removeTree: RemovePath = (path) => rm(path, { recursive: true, force: true });

/** Removes the directory, then forgets it. */
export async function discardStaged(db: Db, path: string, remove: RemovePath = removeTree): Promise<void> {
  await remove(path);
  endStaging(db, path);
}

/** Removes what dead processes left half-done; says what it removed. */
export async function recoverStaging(db: Db, remove: RemovePath): Promise<string[]> {
  const orphans = stagedRows(db).filter((row) => !isLive(row.pid, row.pidStart));
  for (const row of orphans) await discardStaged(db, row.path, remove);
  return orphans.map((row) => `removed unfinished ${row.path}`);
}
