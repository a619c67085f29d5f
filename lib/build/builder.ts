// strata build: a Dockerfile's steps as Docker's classic builder runs them.
// Each filesystem step (RUN, COPY, ADD) runs in a container on the previous
// step's layer and is committed as one layer holding only its changes;
// metadata steps change only the config and add an empty-layer history entry.
// Every step's result is cached, keyed by the state it started from, its
// instruction and its sources' content, so a rebuild reuses what did not change.
import { execFile } from 'node:child_process';
import { mkdtemp, open } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';

import type { ImageConfig, HistoryEntry } from '../images/config.js';
import { normalizeTag } from '../images/reference.js';
import { openInTree } from '../native/resolve.js';
import { runInRootfs } from '../run/runner.js';
import { transaction } from '../store/database.js';
import { shortId, type Digest } from '../store/digest.js';
import type { Image } from '../store/images.js';
import type { Layer } from '../store/layers.js';
import { beginStaging, discardStaged } from '../store/staging.js';
import type { Store } from '../store/store.js';
import { BuildCache, type CacheKey } from './cache.js';
import { BuildContext, type ContextEntry, type FileHashes } from './context.js';
import { copyArchive, planCopy, type CopyEntry, type Owner } from './copy.js';
import { DockerfileError, parseDockerfile, parsePairs, splitWords, substitute, type Instruction } from './dockerfile.js';
import { withSecrets, type SecretMount } from './secrets.js';
import { resolveIdentity } from './users.js';

export interface BuildOptions {
  /** The Dockerfile's text. */
  dockerfile: string;
  /** The context directory COPY and ADD read from, or that directory already read. */
  context: string | BuildContext;
  /** name[:tag] for the result. */
  tags?: readonly string[];
  /** Run every step, reusing nothing (the results still fill the cache). */
  noCache?: boolean;
  buildArgs?: Readonly<Record<string, string>>;
  /** Secret id -> host file, for RUN --mount=type=secret,id=... */
  secrets?: Readonly<Record<string, string>>;
  /** The classic builder's progress lines and the RUN steps' output. */
  output?: (text: string | Buffer) => void;
}

export interface BuildResult {
  image: Image;
  steps: number;
  /** Steps reused from the cache. */
  cached: number;
}

/** A build that stopped: a bad Dockerfile, a missing source, or a RUN that failed (with its exit status). */
export class BuildError extends Error {
  readonly code = 'ERR_BUILD_FAILED';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Where a build is between steps: an image config (by id, or "scratch") and its top layer. */
interface State {
  id: string;
  bytes: Buffer | null;
  config: ImageConfig;
  topLayer: Digest | null;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ARCHITECTURES: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

const nop = (text: string) => `/bin/sh -c #(nop) ${text}`;
const goList = (words: readonly string[]) => `[${words.map((w) => JSON.stringify(w)).join(' ')}]`;

function envMap(config: ImageConfig): Map<string, string> {
  const env = new Map<string, string>();
  for (const item of (config.config?.Env as string[] | undefined) ?? []) {
    const at = item.indexOf('=');
    env.set(at < 0 ? item : item.slice(0, at), at < 0 ? '' : item.slice(at + 1));
  }
  return env;
}

export async function build(store: Store, options: BuildOptions): Promise<BuildResult> {
  const { escape, instructions } = parseDockerfile(options.dockerfile);
  const progress = { cmdSet: false };
  const tags = (options.tags ?? []).map(normalizeTag);
  const out = options.output ?? (() => {});
  const cache = new BuildCache(store);
  const context = typeof options.context === 'string' ? await BuildContext.open(options.context) : options.context;
  const remembered = cache.fileHashes();
  const buildArgs = new Map(Object.entries(options.buildArgs ?? {}));
  const consumed = new Set<string>();
  // ARGs before FROM are for FROM only; those after it for the steps below.
  const metaArgs = new Map<string, string>();
  const args = new Map<string, string>();
  let state: State | undefined;
  let cached = 0;

  // An ARG takes its --build-arg, else its default, else (redeclared after FROM) the value it had before FROM.
  const declareArgs = (instruction: Instruction, into: Map<string, string>, vars: ReadonlyMap<string, string>) => {
    for (const word of splitWords(instruction.args, escape)) {
      const at = word.indexOf('=');
      const name = at < 0 ? word : word.slice(0, at);
      consumed.add(name);
      const value = buildArgs.get(name) ?? (at < 0 ? (into === args ? metaArgs.get(name) : undefined) : substitute(word.slice(at + 1), vars, escape));
      if (value !== undefined) into.set(name, value);
    }
  };

  out(`Sending build context to Docker daemon  ${formatBytes(context.size)}\n`);
  try {
    for (const [index, instruction] of instructions.entries()) {
      out(`Step ${index + 1}/${instructions.length} : ${instruction.original}\n`);
      try {
        if (!state) {
          if (instruction.keyword === 'ARG') {
            declareArgs(instruction, metaArgs, metaArgs);
            continue;
          }
          state = fromImage(store, substitute(instruction.args.split(/\s+/)[0]!, metaArgs, escape));
          out(` ---> ${state.id === 'scratch' ? 'scratch' : shortId(state.id)}\n`);
          continue;
        }
        const vars = new Map([...args, ...envMap(state.config)]);
        if (instruction.keyword === 'ARG') {
          // Declared ARGs are substituted into later steps and seen by RUN; their values are part of RUN's cache key.
          declareArgs(instruction, args, vars);
        }
        const step = await planStep(instruction, state, { escape, vars, args, context, store, secrets: options.secrets ?? {}, out, progress, remembered });
        const key: CacheKey = { parent: state.id, instruction: step.key, sources: step.sources ?? '' };
        const hit = options.noCache ? undefined : cache.lookup(key);
        if (hit) {
          state = { id: hit.id, bytes: hit.config, config: JSON.parse(hit.config.toString()) as ImageConfig, topLayer: hit.topLayer };
          cached++;
          out(` ---> Using cache\n ---> ${shortId(hit.id)}\n`);
          continue;
        }
        const parent = state.topLayer;
        const made = step.run
          ? await runLayer(store, parent!, step.run, out)
          : step.copy
            ? await step.copy((plan) => copyLayer(store, parent, plan))
            : undefined;
        const layer = made?.layer;
        const created = new Date().toISOString();
        const inner = { ...(state.config.config ?? {}) };
        step.change?.(inner);
        const history: HistoryEntry = { created, created_by: step.createdBy, ...(!layer && { empty_layer: true }) };
        const config: ImageConfig = {
          ...state.config,
          created,
          config: inner,
          rootfs: { type: 'layers', diff_ids: layer ? [...state.config.rootfs.diff_ids, layer.diffId] : state.config.rootfs.diff_ids },
          history: [...(state.config.history ?? []), history],
        };
        const bytes = Buffer.from(JSON.stringify(config));
        const topLayer = layer?.chainId ?? state.topLayer;
        let recorded: { id: Digest; doomed: Layer[] };
        try {
          recorded = transaction(store.db, () => {
            const entry = cache.recordInTransaction(key, bytes, topLayer);
            // The cache entry now holds the layer the step made.
            if (made) entry.doomed.push(...store.layers.releaseHoldInTransaction(made.hold));
            return entry;
          });
        } catch (error) {
          if (made) await store.layers.purge(transaction(store.db, () => store.layers.releaseHoldInTransaction(made.hold)));
          throw error;
        }
        const { id, doomed } = recorded;
        await store.layers.purge(doomed);
        state = { id, bytes, config, topLayer };
        out(` ---> ${shortId(id)}\n`);
      } catch (error) {
        if (error instanceof BuildError) throw error;
        throw new BuildError(`${instruction.keyword} (line ${instruction.line}): ${(error as Error).message}`);
      }
    }
  } finally {
    // What was learned about the context's files is kept even when a step fails.
    remembered.flush();
  }
  if (!state) throw new BuildError('the Dockerfile has no FROM');
  if (!state.bytes) throw new BuildError('FROM scratch with no steps after it builds nothing');
  const unused = [...buildArgs.keys()].filter((name) => !consumed.has(name));
  if (unused.length > 0) out(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
  // An unchanged rebuild whose tags are already in place changes nothing.
  // (A state's id is its config's sha256, as the image's or cache entry's it came from.)
  const existing = store.images.get(state.id as Digest);
  const image = existing && tags.every((tag) => existing.tags.includes(tag)) ? existing : store.images.add(state.bytes, { tags }).image;
  out(`Successfully built ${shortId(image.id)}\n`);
  for (const tag of tags) out(`Successfully tagged ${tag}\n`);
  return { image, steps: instructions.length, cached };
}

function fromImage(store: Store, name: string): State {
  if (name === 'scratch') {
    const config: ImageConfig = { architecture: ARCHITECTURES[process.arch] ?? process.arch, os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [] };
    return { id: 'scratch', bytes: null, config, topLayer: null };
  }
  const image = store.images.resolve(name);
  return { id: image.id, bytes: image.configBytes, config: image.config, topLayer: image.topLayer };
}

interface StepContext {
  escape: string;
  /** ARGs and ENV (ENV winning) for substitution. */
  vars: ReadonlyMap<string, string>;
  args: ReadonlyMap<string, string>;
  context: BuildContext;
  store: Store;
  secrets: Readonly<Record<string, string>>;
  out: (text: string | Buffer) => void;
  /** What earlier steps of this build did that later ones depend on. */
  progress: { cmdSet: boolean };
  remembered: FileHashes;
}

/**
 * A layer a step made, held by this process until the step's cache entry
 * takes it over: should the process die first, the next open releases it.
 */
interface HeldLayer {
  layer: Layer;
  hold: number;
}

/** What a step does: its cache key, its history entry, and its change to the config or the filesystem. */
interface Step {
  key: string;
  sources?: string;
  createdBy: string;
  change?: (config: Record<string, unknown>) => void;
  /** RUN: changes the root filesystem of a container on the previous step, committed as the layer. */
  run?: (rootfs: string, containerId: string) => Promise<void>;
  /** COPY, ADD: makes the layer from planned entries, given how to turn a plan into a layer. */
  copy?: (makeLayer: (plan: CopyPlan) => Promise<HeldLayer>) => Promise<HeldLayer>;
}

/** A COPY's entries, planned against a view of the previous step's tree (none for FROM scratch). */
type CopyPlan = (view: string | undefined) => Promise<CopyEntry[]>;

async function planStep(instruction: Instruction, state: State, step: StepContext): Promise<Step> {
  const { keyword } = instruction;
  const { escape } = step;
  const expanded = () => substitute(instruction.args, step.vars, escape);
  const commandOf = () => instruction.json ?? ['/bin/sh', '-c', instruction.args];
  switch (keyword) {
    case 'ARG':
      return { key: `ARG ${instruction.args}`, createdBy: nop(` ARG ${instruction.args}`) };
    case 'ENV': {
      const pairs = parsePairs(expanded(), 'ENV', escape);
      return {
        key: `ENV ${JSON.stringify(pairs)}`,
        createdBy: nop(` ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`),
        change: (config) => {
          const env = envMap({ ...state.config, config });
          for (const [k, v] of pairs) env.set(k, v);
          config.Env = [...env].map(([k, v]) => `${k}=${v}`);
        },
      };
    }
    case 'LABEL': {
      const pairs = parsePairs(expanded(), 'LABEL', escape);
      return {
        key: `LABEL ${JSON.stringify(pairs)}`,
        createdBy: nop(` LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`),
        change: (config) => {
          config.Labels = { ...((config.Labels as Record<string, string> | null) ?? {}), ...Object.fromEntries(pairs) };
        },
      };
    }
    case 'WORKDIR': {
      const dir = posix.resolve((state.config.config?.WorkingDir as string | undefined) || '/', expanded());
      return { key: `WORKDIR ${dir}`, createdBy: nop(`WORKDIR ${dir}`), change: (config) => void (config.WorkingDir = dir) };
    }
    case 'USER': {
      const user = expanded();
      if (!user) throw new DockerfileError('USER needs a user name or id');
      return { key: `USER ${user}`, createdBy: nop(` USER ${user}`), change: (config) => void (config.User = user) };
    }
    case 'EXPOSE': {
      const ports = splitWords(expanded(), escape).map((p) => (p.includes('/') ? p.toLowerCase() : `${p}/tcp`));
      if (ports.length === 0 || ports.some((p) => !/^\d+(-\d+)?\/(tcp|udp|sctp)$/.test(p))) throw new DockerfileError(`EXPOSE: invalid port in "${instruction.args}"`);
      return {
        key: `EXPOSE ${ports.join(' ')}`,
        createdBy: nop(` EXPOSE ${ports.join(' ')}`),
        change: (config) => {
          config.ExposedPorts = { ...((config.ExposedPorts as Record<string, object> | null) ?? {}), ...Object.fromEntries(ports.map((p) => [p, {}])) };
        },
      };
    }
    case 'CMD':
    case 'ENTRYPOINT': {
      const command = commandOf();
      const resetsCmd = step.progress.cmdSet;
      if (keyword === 'CMD') step.progress.cmdSet = true;
      const field = keyword === 'CMD' ? 'Cmd' : 'Entrypoint';
      return {
        key: `${keyword} ${JSON.stringify(command)}`,
        createdBy: nop(` ${keyword} ${goList(command)}`),
        change: (config) => {
          config[field] = command;
          // As docker: a new ENTRYPOINT drops the command inherited with the base image.
          if (keyword === 'ENTRYPOINT' && !resetsCmd) config.Cmd = null;
        },
      };
    }
    case 'RUN':
      return planRun(instruction, state, step);
    case 'COPY':
    case 'ADD':
      return planCopyStep(instruction, state, step);
    default:
      throw new DockerfileError(`unsupported instruction ${keyword}`);
  }
}

function planRun(instruction: Instruction, state: State, step: StepContext): Step {
  const mounts = (instruction.flags.mount ?? []).map(parseSecretMount);
  const unknown = Object.keys(instruction.flags).filter((flag) => flag !== 'mount');
  if (unknown.length > 0) throw new DockerfileError(`RUN does not take --${unknown[0]}`);
  if (!state.topLayer) throw new DockerfileError('RUN needs a root filesystem: FROM scratch has none until COPY or ADD adds one');
  const command = instruction.json ?? ['/bin/sh', '-c', instruction.args];
  const argPairs = [...step.args].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`);
  const shown = instruction.json ? instruction.json.join(' ') : `/bin/sh -c ${instruction.args}`;
  const createdBy = argPairs.length > 0 ? `|${argPairs.length} ${argPairs.join(' ')} ${shown}` : shown;
  return {
    key: `RUN ${JSON.stringify({ command, args: argPairs, mounts })}`,
    createdBy,
    run: async (rootfs, containerId) => {
      const config = state.config.config ?? {};
      const user = typeof config.User === 'string' && config.User ? await resolveIdentity(rootfs, config.User) : undefined;
      const env = envMap(state.config);
      for (const [k, v] of step.args) if (!env.has(k)) env.set(k, v);
      if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
      if (!env.has('HOME')) env.set('HOME', user?.home ?? (user && user.uid !== 0 ? '/' : '/root'));
      const workdir = (config.WorkingDir as string | undefined) || '/';
      // As docker at container start: the working directory is made if missing.
      await (await openInTree(rootfs, workdir, { create: true })).close();
      const code = await withSecrets(rootfs, mounts, step.secrets, () =>
        runInRootfs(rootfs, {
          command,
          env: Object.fromEntries(env),
          workdir,
          ...(user && { user }),
          hostname: shortId(containerId),
          mountDev: true,
          isolateNetwork: true,
          output: step.out,
        }),
      );
      if (code !== 0) throw new BuildError(`The command '${shown}' returned a non-zero code: ${code}`, code);
    },
  };
}

function parseSecretMount(text: string): SecretMount {
  const fields = new Map(
    text.split(',').map((field) => {
      const at = field.indexOf('=');
      return at < 0 ? [field, 'true'] : [field.slice(0, at), field.slice(at + 1)];
    }),
  );
  if (fields.get('type') !== 'secret') throw new DockerfileError(`RUN --mount=${text}: only type=secret mounts are supported`);
  const id = fields.get('id') ?? posix.basename(fields.get('target') ?? fields.get('dst') ?? '');
  if (!id) throw new DockerfileError(`RUN --mount=${text}: a secret mount needs an id`);
  return { id, target: fields.get('target') ?? fields.get('dst') ?? `/run/secrets/${id}`, required: fields.get('required') === 'true' };
}

async function planCopyStep(instruction: Instruction, state: State, step: StepContext): Promise<Step> {
  const { keyword } = instruction;
  const unknown = Object.keys(instruction.flags).filter((flag) => flag !== 'chown');
  if (unknown.length > 0) throw new DockerfileError(`${keyword} does not take --${unknown[0]}`);
  const words = (instruction.json ?? splitWords(instruction.args, step.escape)).map((w) => substitute(w, step.vars, step.escape));
  if (words.length < 2) throw new DockerfileError(`${keyword} needs at least one source and a destination`);
  const rawDest = words.at(-1)!;
  const workdir = (state.config.config?.WorkingDir as string | undefined) || '/';
  const dest = posix.resolve(workdir, rawDest) + (rawDest.endsWith('/') || rawDest === '.' ? '/' : '');
  const chown = instruction.flags.chown?.[0] !== undefined ? substitute(instruction.flags.chown[0], step.vars, step.escape) : undefined;
  const sources: ContextEntry[] = [];
  for (const word of words.slice(0, -1)) {
    if (/^[a-z]+:\/\//i.test(word)) throw new DockerfileError(`${keyword} ${word}: remote sources are not supported; download them into the context`);
    sources.push(...step.context.sources(word));
  }
  if ((words.length > 2 || sources.length > 1) && !dest.endsWith('/')) {
    throw new DockerfileError(`When using ${keyword} with more than one source file, the destination must be a directory and end with a /`);
  }
  const digest = step.context.digest(sources, step.remembered);
  const kind = sources.length > 1 ? 'multi' : sources[0]!.type === 'directory' ? 'dir' : 'file';
  return {
    key: `${keyword} ${JSON.stringify({ sources: words.slice(0, -1), dest, chown })}`,
    sources: digest,
    createdBy: nop(`${keyword} ${kind}:${digest} in ${dest} `),
    copy: async (makeLayer) => {
      const archives: ContextEntry[] = [];
      const copied: ContextEntry[] = [];
      for (const source of sources) {
        const local = keyword === 'ADD' && source.type === 'file' && (await isArchive(join(step.context.dir, source.path)));
        (local ? archives : copied).push(source);
      }
      const layerOf = (unpacked: readonly BuildContext[]) =>
        makeLayer(async (view) => {
          const owner: Owner = chown ? await resolveIdentity(view, chown) : { uid: 0, gid: 0 };
          const entries = copied.length > 0 ? await planCopy(view, step.context, copied, dest, owner) : [];
          const into = dest.endsWith('/') ? dest : `${dest}/`;
          for (const tree of unpacked) entries.push(...(await planCopy(view, tree, tree.sources('.'), into, chown ? owner : undefined)));
          return entries;
        });
      if (archives.length === 0) return layerOf([]);
      // Local tars are unpacked (owners kept unless --chown) and copied like a directory.
      return withScratch(step.store, async (scratch) => {
        const unpacked: BuildContext[] = [];
        for (const [index, archive] of archives.entries()) unpacked.push(await unpack(join(step.context.dir, archive.path), join(scratch, String(index))));
        return layerOf(unpacked);
      });
    },
  };
}

/** A tar, plain or compressed (gzip, bzip2, xz, zstd): what ADD unpacks. */
async function isArchive(path: string): Promise<boolean> {
  await using file = await open(path, 'r');
  const head = Buffer.alloc(512);
  const { bytesRead } = await file.read(head, 0, 512, 0);
  const magic = head.subarray(0, bytesRead);
  return (
    (magic[0] === 0x1f && magic[1] === 0x8b) ||
    magic.subarray(0, 3).toString('latin1') === 'BZh' ||
    magic.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ||
    magic.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])) ||
    magic.subarray(257, 262).toString('latin1') === 'ustar'
  );
}

/** A local tar (compression detected by tar) unpacked into dir, owners and modes kept, read as a context. */
async function unpack(archive: string, dir: string): Promise<BuildContext> {
  mkdirSync(dir);
  await new Promise<void>((resolve, reject) =>
    execFile('tar', ['-x', '-p', '--numeric-owner', '-C', dir, '-f', archive], (error, _out, stderr) =>
      error ? reject(new Error(`cannot unpack ${posix.basename(archive)}: ${stderr.trim() || error.message}`)) : resolve(),
    ),
  );
  return await BuildContext.open(dir, { ignoreFile: false });
}

/** A directory below the store root for work in progress, removed after (or on the next open, after a crash). */
async function withScratch<T>(store: Store, fn: (dir: string) => Promise<T>): Promise<T> {
  mkdirSync(join(store.root, 'tmp'), { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(store.root, 'tmp', 'build-'));
  beginStaging(store.db, dir);
  try {
    return await fn(dir);
  } finally {
    await discardStaged(store.db, dir);
  }
}

/**
 * Runs a RUN step in a container on `parent` and commits its changes as one
 * held layer. The container goes whatever happens.
 */
async function runLayer(store: Store, parent: Digest, run: NonNullable<Step['run']>, out: (text: string) => void): Promise<HeldLayer> {
  const container = await store.containers.create(parent);
  const short = shortId(container.id);
  out(` ---> Running in ${short}\n`);
  try {
    const rootfs = await store.containers.mount(container.id);
    try {
      await run(rootfs, container.id);
    } finally {
      await store.containers.unmount(container.id);
    }
    const { layer, hold } = await store.containers.commit(container.id, { hold: true });
    return { layer, hold: hold! };
  } finally {
    await store.containers.remove(container.id, { force: true });
    out(`Removing intermediate container ${short}\n`);
  }
}

/**
 * Makes a COPY or ADD layer: plans its entries against a read-only look at
 * the parent's tree (a container mounted only for that), then streams the
 * files straight into a new held layer on the parent.
 */
async function copyLayer(store: Store, parent: Digest | null, plan: CopyPlan): Promise<HeldLayer> {
  let entries: CopyEntry[];
  if (parent) {
    const container = await store.containers.create(parent);
    try {
      const view = await store.containers.mount(container.id);
      try {
        entries = await plan(view);
      } finally {
        await store.containers.unmount(container.id);
      }
    } finally {
      await store.containers.remove(container.id, { force: true });
    }
  } else {
    entries = await plan(undefined);
  }
  const { layer, hold } = await store.layers.import(Readable.from(copyArchive(entries)), { parent, hold: true });
  return { layer, hold: hold! };
}

/** Sizes as the classic builder prints the context's: 2.048kB. */
function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(3).replace(/\.?0+$/, '')}${units[unit]}`;
}
