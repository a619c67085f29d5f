// The build context: the directory a build reads COPY and ADD sources from,
// minus what .dockerignore excludes; globs over it; and the content digest of
// a step's sources, which decides whether the cached step still holds.
import { createHash, type Hash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, readSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { join, posix } from 'node:path';

import { statfsSync } from '../native/fs.js';
import { scanTree } from '../native/tree.js';

export interface ContextEntry {
  /** Relative to the context root, "/"-separated, no leading "./". */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  /**
   * What identifies this version of a file without reading it (device, inode,
   * size, mode, change and modification times in ns); absent when it changed
   * too recently to be trusted, as a write in the same clock tick would not show.
   */
  stamp?: string;
}

/** Content hashes remembered across builds, by a file's path and stamp. */
export interface FileHashes {
  /** The remembered hashes of those files whose stamp is the one remembered, by path: one look-up for all of a step's files. */
  get(files: ReadonlyArray<{ path: string; stamp: string }>): Map<string, Buffer>;
  set(path: string, stamp: string, hash: Buffer): void;
}

/** Files changed more recently than this are hashed afresh each time (the "racily clean" rule of git's index). */
const SETTLED_MS = 2000;

/** Filesystems that have multigrain timestamps since Linux 6.13. */
const MULTIGRAIN_FILESYSTEMS = new Set(['ext4', 'xfs', 'btrfs', 'tmpfs']);

/**
 * The device whose files' stamps can be trusted the moment they are read, or
 * undefined. With multigrain timestamps (Linux 6.13, on ext4, xfs, btrfs and
 * tmpfs), a change after a stat gets a finer ctime than the one that stat
 * saw, so a stamp read once shows every later change: no settling time.
 * Elsewhere a change in the same clock tick (up to 10 ms) would not show.
 */
export function fineGrainedDevice(dir: string): string | undefined {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  if (major < 6 || (major === 6 && minor < 13)) return undefined;
  if (!MULTIGRAIN_FILESYSTEMS.has(statfsSync(dir).typeName)) return undefined;
  return String(statSync(dir, { bigint: true }).dev);
}

export class ContextError extends Error {
  readonly code = 'ERR_BUILD_CONTEXT';
}

interface IgnorePattern {
  regex: RegExp;
  exclude: boolean;
}

/** A glob as docker reads it (filepath.Match, plus ** for any number of directories) as a regex. */
export function globRegex(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // "**/" matches zero or more directories; a trailing "**" anything.
      if (pattern[i + 2] === '/') {
        source += '(?:.*/)?';
        i += 2;
      } else {
        source += '.*';
        i += 1;
      }
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new ContextError(`bad pattern "${pattern}": unterminated [`);
      source += `[${pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < pattern.length) source += `\\${pattern[++i]}`;
    else source += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

export const hasGlob = (text: string) => /[*?[]/.test(text);

/** A path as docker cleans it: no leading "/" or "./", no trailing "/", "." for the root. */
export function cleanPath(path: string): string {
  const cleaned = posix.normalize(`/${path}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return cleaned === '' ? '.' : cleaned;
}

function parseIgnore(text: string): IgnorePattern[] {
  const patterns: IgnorePattern[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const exclude = !line.startsWith('!');
    if (!exclude) line = line.slice(1).trim();
    patterns.push({ regex: globRegex(cleanPath(line)), exclude });
  }
  return patterns;
}

const readBuffer = Buffer.allocUnsafe(1 << 20);

/** Feeds a file to the hash through one reused buffer: no garbage per file. */
function hashFile(hash: Hash, path: string): void {
  const fd = openSync(path, 'r');
  try {
    for (let read = readSync(fd, readBuffer); read > 0; read = readSync(fd, readBuffer)) hash.update(readBuffer.subarray(0, read));
  } finally {
    closeSync(fd);
  }
}

function contentHash(path: string, stamp: string | undefined, remembered: FileHashes | undefined): Buffer {
  const hash = createHash('sha256');
  hashFile(hash, path);
  const digest = hash.digest();
  if (stamp) remembered?.set(path, stamp, digest);
  return digest;
}

/** The context's files, read once per build. */
export class BuildContext {
  private constructor(
    readonly dir: string,
    /** Every entry not excluded, parents before children, in name order. */
    readonly entries: readonly ContextEntry[],
    private readonly byPath: ReadonlyMap<string, ContextEntry>,
  ) {}

  /** Reads the tree below dir; `ignoreFile: false` takes every file, whatever a .dockerignore says (an unpacked ADD archive). */
  static async open(dir: string, options: { ignoreFile?: boolean } = {}): Promise<BuildContext> {
    if (!existsSync(dir)) throw new ContextError(`the build context ${dir} does not exist`);
    const ignorePath = join(dir, '.dockerignore');
    const patterns = options.ignoreFile !== false && existsSync(ignorePath) ? parseIgnore(readFileSync(ignorePath, 'utf8')) : [];
    // As docker's pattern matcher: the last pattern matching a path, or one of its parents, decides.
    const excluded = (path: string) => {
      let result = false;
      if (patterns.length === 0) return result;
      const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
      for (const pattern of patterns) {
        if (prefixes.some((prefix) => pattern.regex.test(prefix))) result = pattern.exclude;
      }
      return result;
    };
    const entries: ContextEntry[] = [];
    const now = Date.now();
    // One native pass lists the tree with every lstat. A directory excluded as
    // a whole is still listed: it may hold re-included files ("!dir/keep").
    // (Plain assignments, not spreads: thousands of entries go through this
    // loop once per build, before the optimizing compiler has seen it.)
    const byPath = new Map<string, ContextEntry>();
    // Stamps start with the device: an entry on another filesystem mounted below dir settles by time.
    const fineGrained = fineGrainedDevice(dir);
    const fineGrainedPrefix = fineGrained === undefined ? undefined : `${fineGrained}:`;
    for (const entry of await scanTree(dir)) {
      const { path, type } = entry;
      if (type === 'other' || excluded(path)) continue;
      const item: ContextEntry = { path, type, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtimeMs: Math.floor(entry.mtimeMs), size: type === 'file' ? entry.size : 0 };
      const settled = now - entry.changedMs > SETTLED_MS || (fineGrainedPrefix !== undefined && entry.stamp.startsWith(fineGrainedPrefix));
      if (type !== 'directory' && settled) item.stamp = entry.stamp;
      entries.push(item);
      byPath.set(path, item);
    }
    return new BuildContext(dir, entries, byPath);
  }

  /** Bytes of the files a build can read. */
  get size(): number {
    return this.entries.reduce((sum, e) => sum + e.size, 0);
  }

  /** The entries a COPY source names: itself (or its glob's matches), each directory with everything below it. */
  sources(source: string): ContextEntry[] {
    const clean = cleanPath(source);
    if (clean === '.') return [{ path: '.', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtimeMs: 0 }];
    if (hasGlob(clean)) {
      const regex = globRegex(clean);
      const matches = this.entries.filter((e) => regex.test(e.path));
      if (matches.length === 0) throw new ContextError(`no source files were specified: "${source}" matches nothing in the build context`);
      return matches;
    }
    const entry = this.byPath.get(clean);
    if (!entry) throw new ContextError(`file not found in build context or excluded by .dockerignore: ${source}`);
    return [entry];
  }

  /** The entries below a directory source, relative to it, parents first. */
  below(source: ContextEntry): ContextEntry[] {
    if (source.type !== 'directory') return [];
    if (source.path === '.') return [...this.entries];
    const prefix = `${source.path}/`;
    return this.entries.filter((e) => e.path.startsWith(prefix)).map((e) => ({ ...e, path: e.path.slice(prefix.length) }));
  }

  /**
   * The digest of what the sources hold: each entry's name, type, mode, and
   * content (a symlink's target). Times are left out, as docker's build cache
   * leaves them out: touching a file does not invalidate a step. A file whose
   * stamp is unchanged since an earlier build is not read again.
   */
  digest(sources: readonly ContextEntry[], remembered?: FileHashes): string {
    // Every entry, with the name it is hashed under and its path on the host.
    // Entry paths are clean ("a/b": no "." or ".." or empty parts), so
    // join(dir, path) is the joined directory's prefix and the path, with no
    // normalizing of each of thousands.
    const prefix = join(this.dir, 'x').slice(0, -1);
    const items: Array<{ entry: ContextEntry; name: string; full: string }> = [];
    for (const source of sources) {
      items.push({ entry: source, name: source.path, full: join(this.dir, source.path) });
      const below = source.path === '.' ? prefix : `${prefix}${source.path}/`;
      for (const entry of this.below(source)) items.push({ entry, name: `${source.path}/${entry.path}`, full: below + entry.path });
    }
    // With every file settled, the stamps of all of them (and the rest of
    // what is hashed) name the digest as a whole: remembered as one more row,
    // keyed by the context and the sources, so a rebuild with no change reads
    // that row rather than one per file.
    const whole = remembered && items.every(({ entry }) => entry.type !== 'file' || entry.stamp) ? wholeKey(prefix, sources, items) : undefined;
    const wholeKnown = whole && remembered!.get([whole]).get(whole.path);
    if (wholeKnown) return wholeKnown.toString('hex');
    const settled = items.flatMap(({ entry, full }) => (entry.type === 'file' && entry.stamp ? [{ path: full, stamp: entry.stamp }] : []));
    const known = remembered && settled.length > 0 ? remembered.get(settled) : undefined;
    const hash = createHash('sha256');
    for (const { entry, name, full } of items) {
      // The size first keeps file boundaries unambiguous in the one running hash.
      hash.update(`${name}\0${entry.type}\0${entry.mode.toString(8)}\0${entry.size}\0`);
      if (entry.type === 'file') hash.update(known?.get(full) ?? contentHash(full, entry.stamp, remembered));
      if (entry.type === 'symlink') hash.update(readlinkSync(full));
      hash.update('\n');
    }
    const digest = hash.digest();
    if (whole) remembered!.set(whole.path, whole.stamp, digest);
    return digest.toString('hex');
  }
}

/**
 * What names a step's sources digest as a whole: the context's directory and
 * the sources (as "path"), and everything that goes into the digest but with
 * each file's stamp for its content (as "stamp", after "sources:", so never a
 * file's stamp). The text itself, not a hash of it: a rebuild with no change
 * then loads no hashing code at all.
 */
function wholeKey(prefix: string, sources: readonly ContextEntry[], items: ReadonlyArray<{ entry: ContextEntry; name: string; full: string }>): { path: string; stamp: string } {
  let stamp = 'sources:';
  for (const { entry, name, full } of items) {
    const content = entry.type === 'file' ? entry.stamp! : entry.type === 'symlink' ? readlinkSync(full) : '';
    stamp += `${name}\0${entry.type}\0${entry.mode.toString(8)}\0${entry.size}\0${content}\n`;
  }
  return { path: `sources ${JSON.stringify([prefix, ...sources.map((s) => s.path)])}`, stamp };
}
