// The processes that have a store open, one row each for as long as they
// have it open. A row whose process is gone means that process ended without
// closing the store: an unclean shutdown, which the next open checks for.
import { relaxed, type Db } from './database.js';
import { isLive, ownStart } from './staging.js';

interface SessionRow {
  id: number;
  pid: number;
  pidStart: string;
}

function sessions(db: Db): SessionRow[] {
  return db.prepare('SELECT id, pid, pid_start AS pidStart FROM sessions').all() as SessionRow[];
}

/** Records that this process has the store open; returns the session's id for closeSession. */
export function openSession(db: Db): number {
  return relaxed(db, () =>
    Number(db.prepare('INSERT INTO sessions (pid, pid_start, opened) VALUES (?, ?, ?)').run(process.pid, ownStart, new Date().toISOString()).lastInsertRowid),
  );
}

export function closeSession(db: Db, id: number): void {
  relaxed(db, () => db.prepare('DELETE FROM sessions WHERE id = ?').run(id));
}

/** Forgets the sessions of processes that are gone; returns how many there were (0: every earlier shutdown was clean). */
export function endDeadSessions(db: Db): number {
  return relaxed(db, () => {
    const dead = sessions(db).filter((row) => !isLive(row.pid, row.pidStart));
    for (const row of dead) db.prepare('DELETE FROM sessions WHERE id = ?').run(row.id);
    return dead.length;
  });
}

/** Whether a process other than this one has the store open (its work under way may look like damage). */
export function othersLive(db: Db): boolean {
  return sessions(db).some((row) => row.pid !== process.pid && isLive(row.pid, row.pidStart));
}
