// Where a command reads a tar from: a regular file is read in place (a
// FileRange: no stream, reused buffers), a pipe or `-` (standard input) as a
// stream.
import { open } from 'node:fs/promises';

import type { LayerInput } from '../archive/apply.js';
import { UsageError } from './output.js';

export interface ArchiveInput {
  input: LayerInput;
  /** Closes the file once the import settled. */
  close(): Promise<void>;
}

/** Opens the archive before reading starts, so a missing file is a plain error, not a stream event. */
export async function openArchiveInput(path: string, what: string): Promise<ArchiveInput> {
  if (path === '-') {
    if (process.stdin.isTTY) throw new UsageError(`refusing to read ${what} from a terminal: give a file or pipe one in`);
    return { input: process.stdin, close: async () => {} };
  }
  const file = await open(path, 'r');
  try {
    const stats = await file.stat();
    if (stats.isDirectory()) throw new UsageError(`${path} is a directory: give ${what}`);
    const input = stats.isFile() ? { file, start: 0, length: stats.size } : file.createReadStream({ autoClose: false });
    return { input, close: () => file.close() };
  } catch (error) {
    await file.close();
    throw error;
  }
}
