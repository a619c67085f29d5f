// Mount specifications: Docker's `--mount` and `-v` syntaxes parsed into one
// typed form, with the checks (and, as far as they are known, the messages)
// of the docker CLI and the daemon's Linux mount parser. Pure functions: the
// filesystem is consulted later, when a container is created.
import { homedir } from 'node:os';
import { posix } from 'node:path';

export type Propagation = 'private' | 'rprivate' | 'shared' | 'rshared' | 'slave' | 'rslave';
/** enabled: rbind (read-only recursively); disabled: no submounts; writable: submounts stay writable; readonly: read-only recursively. */
export type BindRecursive = 'enabled' | 'disabled' | 'writable' | 'readonly';

interface MountBase {
  /** Absolute and clean, never "/". */
  target: string;
  readOnly: boolean;
}

export interface BindMountSpec extends MountBase {
  type: 'bind';
  /** An absolute host path. */
  source: string;
  propagation: Propagation;
  recursive: BindRecursive;
  /** Create a missing source directory (the `-v` form does; `--mount` only with bind-create-src). */
  createSource: boolean;
}

export interface VolumeMountSpec extends MountBase {
  type: 'volume';
  /** A volume name; empty for an anonymous volume, named at container create. */
  source: string;
  /** Do not fill an empty volume from the image's content at the target. */
  noCopy: boolean;
  /** Local driver options and labels for a volume this mount creates. */
  driverOptions: Record<string, string>;
  labels: Record<string, string>;
}

export interface TmpfsMountSpec extends MountBase {
  type: 'tmpfs';
  /** Bytes; unlimited (the kernel's default, half of RAM) when absent. */
  size?: number;
  /** Permission bits of the tmpfs root (default 1777). */
  mode?: number;
}

export type MountSpec = BindMountSpec | VolumeMountSpec | TmpfsMountSpec;
export type MountType = MountSpec['type'];

/** A specification Docker would reject; the message says why. */
export class MountSpecError extends Error {
  readonly code = 'ERR_MOUNT_SPEC';

  constructor(message: string) {
    super(message);
    this.name = 'MountSpecError';
  }
}

const PROPAGATIONS: readonly Propagation[] = ['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave'];
const RECURSIVE: readonly BindRecursive[] = ['enabled', 'disabled', 'writable', 'readonly'];
const CONSISTENCY = ['consistent', 'cached', 'delegated', 'default'];

export const VOLUME_NAME_CHARS = '[a-zA-Z0-9][a-zA-Z0-9_.-]';
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/** Docker's local volume name rule, with its messages. */
export function validateVolumeName(name: string): void {
  if (name.length < 2) {
    throw new MountSpecError('volume name is too short, names should be at least two alphanumeric characters');
  }
  if (!VOLUME_NAME.test(name)) {
    throw new MountSpecError(
      `${JSON.stringify(name)} includes invalid characters for a local volume name, only ${JSON.stringify(VOLUME_NAME_CHARS)} are allowed. ` +
        'If you intended to pass a host directory, use absolute path',
    );
  }
}

/** Docker's units.RAMInBytes: "64m", "1.5g", "512", binary multiples, optional i/b suffixes. */
export function parseRamSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(text);
  if (!match) throw new MountSpecError(`invalid size: '${text}'`);
  const power = match[2] ? 'kmgtp'.indexOf(match[2].toLowerCase()) + 1 : 0;
  return Math.floor(Number(match[1]) * 1024 ** power);
}

function mountConfigError(type: string, message: string): MountSpecError {
  return new MountSpecError(`invalid mount config for type ${JSON.stringify(type)}: ${message}`);
}

function checkTarget(type: string, target: string): string {
  if (target === '') throw mountConfigError(type, 'field Target must not be empty');
  if (!target.startsWith('/')) throw mountConfigError(type, `invalid mount path: '${target}' mount path must be absolute`);
  const clean = posix.normalize(target).replace(/(.)\/+$/, '$1');
  if (clean === '/') throw mountConfigError(type, "invalid specification: destination can't be '/'");
  return clean;
}

/** Splits one CSV record as Go's encoding/csv does: commas, double-quoted fields with "" escapes. */
function splitCsv(text: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === '') {
      quoted = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
    } else if (ch === '"') {
      throw new MountSpecError(`bare " in non-quoted field: ${text}`);
    } else {
      field += ch;
    }
    i++;
  }
  if (quoted) throw new MountSpecError(`extraneous or missing " in quoted field: ${text}`);
  fields.push(field);
  return fields;
}

function parseBool(key: string, value: string | undefined): boolean {
  if (value === undefined) return true;
  switch (value.toLowerCase()) {
    case '1':
    case 'true':
      return true;
    case '0':
    case 'false':
      return false;
    default:
      throw new MountSpecError(`invalid value for '${key}': invalid boolean value ${JSON.stringify(value)}: must be one of "true", "1", "false", or "0" (default "true")`);
  }
}

/** "k=v" into a map (volume-opt, volume-label). */
function setPair(map: Record<string, string>, key: string, value: string): void {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new MountSpecError(`invalid value for '${key}': ${JSON.stringify(value)} must be a key=value pair`);
  map[value.slice(0, eq)] = value.slice(eq + 1);
}

const BOOLEAN_KEYS = new Set(['readonly', 'ro', 'volume-nocopy', 'bind-nonrecursive', 'bind-create-src']);
/** Spellings of one option; giving two of them counts as a duplicate. */
const CANONICAL: Record<string, string> = { src: 'source', dst: 'target', destination: 'target', ro: 'readonly' };
const REPEATABLE = new Set(['volume-opt', 'volume-label']);
const UNSUPPORTED = new Set(['volume-subpath', 'image-subpath', 'consistency']);

/** Parses a `--mount` value (docker/cli opts/mount.go, then the daemon's checks). */
export function parseMountFlag(value: string, options: { cwd?: string } = {}): MountSpec {
  if (value.trim() === '') throw new MountSpecError('invalid empty mount specification');
  let type = 'volume';
  let source = '';
  let target = '';
  let readOnly = false;
  let propagation: Propagation | undefined;
  let recursive: BindRecursive | undefined;
  let createSource = false;
  let noCopy: boolean | undefined;
  let volumeDriver: string | undefined;
  const driverOptions: Record<string, string> = {};
  const labels: Record<string, string> = {};
  let size: number | undefined;
  let mode: number | undefined;
  const seen = new Set<string>();
  const used = { bind: [] as string[], volume: [] as string[], tmpfs: [] as string[] };

  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    const val = eq < 0 ? undefined : field.slice(eq + 1);
    if (key !== key.trim()) throw new MountSpecError(`invalid option '${key}' in '${field}': option should not have whitespace`);
    if (val === undefined && !BOOLEAN_KEYS.has(key)) throw new MountSpecError(`invalid field '${field}' must be a key=value pair`);
    if (val !== undefined && val !== val.trim()) throw new MountSpecError(`invalid value for '${key}': value should not have whitespace`);
    if (val === '') throw new MountSpecError(`invalid value for '${key}': value is empty`);
    const canonical = CANONICAL[key] ?? key;
    if (!REPEATABLE.has(canonical)) {
      if (seen.has(canonical)) throw new MountSpecError(`duplicate option '${key}' in '${value}'`);
      seen.add(canonical);
    }
    const group = key.split('-')[0]!;
    if (group === 'bind' || group === 'volume' || group === 'tmpfs') used[group].push(key);
    const text = val ?? '';
    switch (key) {
      case 'type':
        type = text.toLowerCase();
        break;
      case 'source':
      case 'src':
        source = text === '.' || text.startsWith('./') || text.startsWith('../') ? posix.resolve(options.cwd ?? process.cwd(), text) : text;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        target = text;
        break;
      case 'readonly':
      case 'ro':
        readOnly = parseBool(key, val);
        break;
      case 'bind-propagation':
        if (!PROPAGATIONS.includes(text as Propagation)) throw new MountSpecError(`invalid propagation mode: ${text}`);
        propagation = text as Propagation;
        break;
      case 'bind-recursive':
        if (!RECURSIVE.includes(text as BindRecursive)) {
          throw new MountSpecError(`invalid value for '${key}': ${JSON.stringify(text)} (use one of enabled, disabled, writable, readonly)`);
        }
        recursive = text as BindRecursive;
        break;
      case 'bind-nonrecursive':
        throw new MountSpecError('bind-nonrecursive is deprecated, use bind-recursive=disabled instead');
      case 'bind-create-src':
        createSource = parseBool(key, val);
        break;
      case 'volume-nocopy':
        noCopy = parseBool(key, val);
        break;
      case 'volume-driver':
        volumeDriver = text;
        break;
      case 'volume-opt':
        setPair(driverOptions, key, text);
        break;
      case 'volume-label':
        setPair(labels, key, text);
        break;
      case 'tmpfs-size':
        size = parseRamSize(text);
        break;
      case 'tmpfs-mode':
        if (!/^[0-7]+$/.test(text) || Number.parseInt(text, 8) > 0o7777) {
          throw new MountSpecError(`invalid value for '${key}': ${JSON.stringify(text)} is not an octal mode`);
        }
        mode = Number.parseInt(text, 8);
        break;
      default:
        if (UNSUPPORTED.has(key)) throw new MountSpecError(`option '${key}' is not supported by strata`);
        throw new MountSpecError(`unknown option '${key}' in '${field}'`);
    }
  }

  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs') {
    if (type === 'image' || type === 'npipe' || type === 'cluster') throw mountConfigError(type, 'mount type not supported by strata');
    throw mountConfigError(type, 'mount type unknown');
  }
  for (const group of ['bind', 'volume', 'tmpfs'] as const) {
    if (group !== type && used[group].length > 0) {
      throw new MountSpecError(`cannot mix '${group}-*' options with mount type '${type}'`);
    }
  }
  const cleanTarget = checkTarget(type, target);

  if (type === 'bind') {
    if (recursive === 'writable' && !readOnly) {
      throw new MountSpecError("option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction");
    }
    if (recursive === 'readonly') {
      if (!readOnly) throw new MountSpecError("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction");
      if (propagation !== undefined && propagation !== 'rprivate') {
        throw new MountSpecError("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction");
      }
    }
    return bindSpec(source, cleanTarget, readOnly, propagation ?? 'rprivate', recursive ?? 'enabled', createSource);
  }
  if (type === 'tmpfs') {
    if (source !== '') throw mountConfigError(type, 'field Source must not be specified');
    return { type, target: cleanTarget, readOnly, ...(size !== undefined && { size }), ...(mode !== undefined && { mode }) };
  }
  if (volumeDriver !== undefined && volumeDriver !== 'local') {
    throw new MountSpecError(`volume driver ${JSON.stringify(volumeDriver)} is not supported: only "local" is`);
  }
  if (source !== '') validateVolumeName(source);
  return { type, source, target: cleanTarget, readOnly, noCopy: noCopy ?? false, driverOptions, labels };
}

function bindSpec(
  source: string, target: string, readOnly: boolean, propagation: Propagation, recursive: BindRecursive, createSource: boolean,
): BindMountSpec {
  if (source === '') throw mountConfigError('bind', 'field Source must not be empty');
  if (!source.startsWith('/')) throw mountConfigError('bind', `invalid mount path: '${source}' mount path must be absolute`);
  return { type: 'bind', source: posix.normalize(source).replace(/(.)\/+$/, '$1'), target, readOnly, propagation, recursive, createSource };
}

/** The `-v` mode field: at most one each of rw/ro, z/Z, a propagation, nocopy, a consistency. */
function parseMode(mode: string): { readOnly?: boolean; propagation?: Propagation; noCopy?: boolean } | undefined {
  const result: { readOnly?: boolean; propagation?: Propagation; noCopy?: boolean } = {};
  const seen = new Set<string>();
  for (const part of mode.split(',')) {
    let kind: string;
    if (part === 'rw' || part === 'ro') {
      kind = 'rw';
      result.readOnly = part === 'ro';
    } else if (part === 'z' || part === 'Z') {
      kind = 'label'; // SELinux relabelling: nothing to do here
    } else if (PROPAGATIONS.includes(part as Propagation)) {
      kind = 'propagation';
      result.propagation = part as Propagation;
    } else if (part === 'nocopy') {
      kind = 'nocopy';
      result.noCopy = true;
    } else if (CONSISTENCY.includes(part)) {
      kind = 'consistency';
    } else {
      return undefined;
    }
    if (seen.has(kind)) return undefined;
    seen.add(kind);
  }
  return result;
}

/** Parses a `-v`/`--volume` value: [SOURCE:]TARGET[:MODE]. */
export function parseVolumeFlag(value: string, options: { cwd?: string } = {}): MountSpec {
  const invalid = (reason: string) => new MountSpecError(`invalid spec: ${value}: ${reason}`);
  if (value === '') throw invalid('invalid empty volume spec');
  const parts = value.split(':');
  if (parts.some((part) => part === '')) throw invalid('empty section between colons');
  if (parts.length > 3) throw invalid('too many colons');

  if (parts.length === 1) {
    return { type: 'volume', source: '', target: checkTarget('volume', parts[0]!), readOnly: false, noCopy: false, driverOptions: {}, labels: {} };
  }
  let [source, target] = parts as [string, string];
  if (parts.length === 2 && parseMode(target) !== undefined) throw new MountSpecError(`invalid volume specification: '${value}'`);
  const mode = parts.length === 3 ? parseMode(parts[2]!) : {};
  if (mode === undefined) throw new MountSpecError(`invalid mode: ${parts[2]}`);

  if (source === '~' || source.startsWith('~/')) source = homedir() + source.slice(1);
  else if (source.startsWith('.')) source = posix.resolve(options.cwd ?? process.cwd(), source);

  if (source.startsWith('/')) {
    if (mode.noCopy) throw mountConfigError('bind', 'field VolumeOptions must not be specified');
    return bindSpec(source, checkTarget('bind', target), mode.readOnly ?? false, mode.propagation ?? 'rprivate', 'enabled', true);
  }
  if (mode.propagation) throw mountConfigError('volume', 'field BindOptions must not be specified');
  validateVolumeName(source);
  return {
    type: 'volume', source, target: checkTarget('volume', target), readOnly: mode.readOnly ?? false,
    noCopy: mode.noCopy ?? false, driverOptions: {}, labels: {},
  };
}

/** Checks a container's mounts together: two mounts on one target are an error, as in Docker. */
export function validateMountSet(mounts: readonly MountSpec[]): void {
  const targets = new Set<string>();
  for (const mount of mounts) {
    if (targets.has(mount.target)) throw new MountSpecError(`Duplicate mount point: ${mount.target}`);
    targets.add(mount.target);
  }
}

/** The short form of a spec, for listings: "bind /src:/dst:ro". */
export function describeMount(mount: MountSpec): string {
  const source = mount.type === 'tmpfs' ? 'tmpfs' : mount.source || '<anonymous>';
  return `${mount.type} ${source}:${mount.target}${mount.readOnly ? ':ro' : ''}`;
}
