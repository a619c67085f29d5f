// What every store command needs: the store its global options name, closed
// when the command ends, and progress that only a terminal sees.
import type { Command } from 'commander';

import { Store } from '../store/store.js';

export interface GlobalOptions {
  root: string;
  storageDriver?: string;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

export async function withStore<T>(command: Command, fn: (store: Store) => Promise<T> | T): Promise<T> {
  const options = globalOptions(command);
  const store = await Store.open({ root: options.root, ...(options.storageDriver && { driver: options.storageDriver }) });
  try {
    for (const repair of store.recovered) process.stderr.write(`recovered: ${repair}\n`);
    return await fn(store);
  } finally {
    store.close();
  }
}

/** A one-line progress display on stderr, shown only when stderr is a terminal. */
export function progressLine(label: string): { update(text: string): void; done(): void } {
  const tty = process.stderr.isTTY;
  return {
    update(text: string) {
      if (tty) process.stderr.write(`\r\x1b[K${label}: ${text}`);
    },
    done() {
      if (tty) process.stderr.write('\r\x1b[K');
    },
  };
}
