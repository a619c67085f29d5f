// The processes that have a store open, one marker file each in
// image/sessions/ for as long as they have it open. A marker whose process is
// gone means that process ended without closing the store: an unclean
// shutdown, which the next open checks for.
//
// Files, not rows of the metadata database: a command that changes nothing
// (a rebuild from the cache, a listing) then writes nothing there, and does
// not pay for the syncs of a first write and of the checkpoint at close. A
// marker is synced before the process's first commit through `transaction`
// (see beforeFirstSyncedCommit): a power loss that keeps that work keeps the
// marker too, as the rows that preceded the markers were kept.
import { closeSync, fsyncSync, openSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

import { beforeFirstSyncedCommit, relaxed, type Db } from './database.js';
import { isLive, ownStart } from './staging.js';

interface SessionRow {
  pid: number;
  pidStart: string;
}

/** Where the markers are, below a store root. */
export function sessionsDir(root: string): string {
  return join(root, 'image', 'sessions');
}

/** A marker's name: pid, start time, and a number for the process's several opens. */
function parseMarker(name: string): SessionRow | undefined {
  const match = /^(\d+)-(\d*)-\d+$/.exec(name);
  return match ? { pid: Number(match[1]), pidStart: match[2]! } : undefined;
}

function markers(root: string): Array<SessionRow & { name: string }> {
  return readdirSync(sessionsDir(root)).flatMap((name) => {
    const row = parseMarker(name);
    return row ? [{ ...row, name }] : [];
  });
}

/** Rows of the sessions table, where stratafs before the marker files recorded its sessions. */
function tableRows(db: Db): Array<SessionRow & { id: number }> {
  return db.prepare('SELECT id, pid, pid_start AS pidStart FROM sessions').all() as Array<SessionRow & { id: number }>;
}

let opened = 0;

/**
 * Records that this process has the store open; returns the marker for
 * closeSession. The marker is synced before the first synced commit on db.
 */
export function openSession(db: Db, root: string): string {
  for (;;) {
    const marker = join(sessionsDir(root), `${process.pid}-${ownStart}-${opened++}`);
    try {
      closeSync(openSync(marker, 'wx', 0o600));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    beforeFirstSyncedCommit(db, () => {
      const dir = openSync(sessionsDir(root), 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    });
    return marker;
  }
}

export function closeSession(marker: string): void {
  try {
    unlinkSync(marker);
  } catch (error) {
    // Taken for a dead process's by another open (a pid reused with the same start time cannot be): nothing left to do.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Forgets the sessions of processes that are gone; returns how many there were (0: every earlier shutdown was clean). */
export function endDeadSessions(db: Db, root: string): number {
  let dead = 0;
  for (const marker of markers(root)) {
    if (isLive(marker.pid, marker.pidStart)) continue;
    try {
      unlinkSync(join(sessionsDir(root), marker.name));
      // Counted by the one open that removes it: that one checks the store.
      dead++;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  if (tableRows(db).length > 0) {
    dead += relaxed(db, () => {
      const rows = tableRows(db).filter((row) => !isLive(row.pid, row.pidStart));
      for (const row of rows) db.prepare('DELETE FROM sessions WHERE id = ?').run(row.id);
      return rows.length;
    });
  }
  return dead;
}

/** Whether a process other than this one has the store open (its work under way may look like damage). */
export function othersLive(db: Db, root: string): boolean {
  return [...markers(root), ...tableRows(db)].some((row) => row.pid !== process.pid && isLive(row.pid, row.pidStart));
}
