// A lock file shared by the processes using one store: O_EXCL creates it
// with the owner's pid; a lock whose owner is dead is taken over.
import { open, readFile, unlink } from 'node:fs/promises';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs `fn` holding the lock file `path` (waiting while a live process holds it). */
export async function withLockFile<T>(path: string, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(await readFile(path, 'utf8').catch(() => ''));
      // An empty file is a lock being written: wait for it like a held one.
      if (owner > 0 && !alive(owner)) await unlink(path).catch(() => {});
      else await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(path);
  }
}
