// COPY and ADD as a layer tar: the entries are planned against a view of the
// previous step's tree (where the destination leads, through the image's own
// symlinks, resolved inside the root with openat2 RESOLVE_IN_ROOT; what
// exists there already), then the files are streamed from the context
// straight into a new layer. No container layer is written and read back.
import { closeSync, lstatSync, openSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { join, posix } from 'node:path';

import { headerBlocks } from '../archive/tar-writer.js';
import { openInTree } from '../native/resolve.js';
import type { BuildContext, ContextEntry } from './context.js';

export interface Owner {
  uid: number;
  gid: number;
}

/** One entry of the layer tar. */
export interface CopyEntry {
  /** Absolute inside the image: "/app/src/a.txt". */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  /** Seconds. */
  mtime: number;
  size: number;
  /** Where a file's content (or a symlink's target) is read from. */
  source?: string;
}

/** The host path `path` leads to inside `rootfs`, creating missing directories if asked; undefined if it does not exist. */
export async function pathInTree(rootfs: string, path: string, create = false): Promise<string | undefined> {
  try {
    await using fd = await openInTree(rootfs, path, { create });
    return readlinkSync(`/proc/self/fd/${fd.fd}`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

/** Where `path` really is in the view's tree (its existing part's symlinks followed), and what is there. */
async function resolveInView(view: string | undefined, path: string): Promise<{ path: string; stat?: Stats }> {
  if (path === '/' || !view) return { path };
  const host = await pathInTree(view, path);
  if (host !== undefined) return { path: host.slice(view.length) || '/', stat: lstatSync(host) };
  const parent = await resolveInView(view, posix.dirname(path));
  return { path: posix.join(parent.path, posix.basename(path)) };
}

/**
 * Plans a copy of sources from a context into `dest` as docker's COPY does:
 * a directory's contents (not the directory itself) go into dest; a file goes
 * to dest, or into it when dest ends with "/", is a directory, or several
 * sources are copied. Entries get `owner`, or keep their own when it is
 * undefined (ADD of a tar); modes and file times are kept. Missing parent
 * directories are made (owned by `owner`); existing ones keep their metadata.
 */
export async function planCopy(
  view: string | undefined,
  context: BuildContext,
  sources: readonly ContextEntry[],
  dest: string,
  owner: Owner | undefined,
): Promise<CopyEntry[]> {
  const target = await resolveInView(view, posix.normalize(dest));
  const intoDirectory = target.stat?.isDirectory() || dest.endsWith('/') || sources.length > 1 || sources.some((s) => s.type === 'directory');
  const now = Math.floor(Date.now() / 1000);
  const entries: CopyEntry[] = [];
  // The directories down to the destination: as they are, or new.
  const top = intoDirectory ? target.path : posix.dirname(target.path);
  const parts = top.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const path = `/${parts.slice(0, i).join('/')}`;
    const stat = view ? lstatSync(join(view, path), { throwIfNoEntry: false }) : undefined;
    if (stat && !stat.isDirectory()) throw new Error(`cannot copy to ${dest}: ${path} is not a directory`);
    entries.push(
      stat
        ? { path, type: 'directory', mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, mtime: Math.floor(stat.mtimeMs / 1000), size: 0 }
        : { path, type: 'directory', mode: 0o755, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, mtime: now, size: 0 },
    );
  }
  const add = (entry: ContextEntry, host: string, path: string) => {
    if (entry.type !== 'directory' && view && lstatSync(join(view, path), { throwIfNoEntry: false })?.isDirectory()) {
      throw new Error(`cannot copy ${entry.path} onto the directory ${path}`);
    }
    const { uid, gid } = owner ?? entry;
    entries.push({ path, type: entry.type, mode: entry.mode, uid, gid, mtime: Math.floor(entry.mtimeMs / 1000), size: entry.size, source: host });
  };
  for (const source of sources) {
    const host = join(context.dir, source.path);
    if (source.type === 'directory') {
      for (const entry of context.below(source)) add(entry, join(host, entry.path), posix.join(top, entry.path));
    } else {
      add(source, host, intoDirectory ? posix.join(top, posix.basename(source.path)) : target.path);
    }
  }
  return entries;
}

const CHUNK = 1 << 20;

/**
 * The layer tar of planned entries, file contents read as it streams, in
 * pieces of about a megabyte: a chunk per header and small file would cost
 * more in stream hand-offs than in reading.
 */
export function* copyArchive(entries: readonly CopyEntry[]): Generator<Buffer> {
  let pieces: Buffer[] = [];
  let size = 0;
  for (const piece of tarPieces(entries)) {
    pieces.push(piece);
    size += piece.length;
    if (size >= CHUNK) {
      yield Buffer.concat(pieces, size);
      pieces = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(pieces, size);
}

function* tarPieces(entries: readonly CopyEntry[]): Generator<Buffer> {
  for (const entry of entries) {
    const name = entry.path.slice(1);
    const base = { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime };
    if (entry.type === 'directory') {
      yield* headerBlocks({ ...base, name: `${name}/`, size: 0, type: '5' });
    } else if (entry.type === 'symlink') {
      yield* headerBlocks({ ...base, name, size: 0, type: '2', linkname: readlinkSync(entry.source!) });
    } else {
      yield* headerBlocks({ ...base, name, size: entry.size, type: '0' });
      // Synchronous reads: for thousands of small files, a thread-pool round trip per read costs more than the read.
      const fd = openSync(entry.source!, 'r');
      try {
        let done = 0;
        while (done < entry.size) {
          const chunk = Buffer.allocUnsafe(Math.min(CHUNK, entry.size - done));
          const read = readSync(fd, chunk, 0, chunk.length, done);
          if (read === 0) break;
          done += read;
          yield read === chunk.length ? chunk : chunk.subarray(0, read);
        }
        if (done !== entry.size || readSync(fd, Buffer.alloc(1), 0, 1, done) !== 0) {
          throw new Error(`${entry.source} changed size while it was being copied`);
        }
      } finally {
        closeSync(fd);
      }
      yield Buffer.alloc((512 - (entry.size % 512)) % 512);
    }
  }
  yield Buffer.alloc(1024);
}
