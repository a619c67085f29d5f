// `strata run`: a storage demonstrator, not a runtime. It mounts a container's
// root filesystem and mounts, runs one command chrooted into it in new mount,
// pid and uts namespaces (no network namespace setup, no cgroups), then
// unmounts. Node cannot unshare in-process (namespaces are per thread), so
// util-linux's unshare does it, in a child process.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';

import { mknodSync } from '../native/fs.js';
import { fsconfig, fsmount, fsopen, moveMount } from '../native/mount-api.js';
import { openInTree } from '../native/resolve.js';
import type { MountSpec } from '../mounts/spec.js';
import { shortId } from '../store/digest.js';
import type { Store } from '../store/store.js';
import { resolveRoot } from './image.js';

export interface RunOptions {
  /** The command and its arguments, run inside the container. */
  command: readonly string[];
  mounts?: readonly MountSpec[];
  name?: string;
  /** Remove the container, and its anonymous volumes, when the command ends (docker run --rm). */
  remove?: boolean;
  owner?: string;
  allowSensitiveBinds?: boolean;
}

export interface RunResult {
  containerId: string;
  /** The command's exit status; 128 + the signal number if a signal ended it. */
  exitCode: number;
}

/** The device nodes a minimal /dev holds, as Docker's default set: [name, major, minor]. */
const DEVICES: ReadonlyArray<[string, number, number]> = [
  ['null', 1, 3], ['zero', 1, 5], ['full', 1, 7], ['random', 1, 8], ['urandom', 1, 9], ['tty', 5, 0],
];

/** Docker's default environment for a container. */
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export async function runContainer(store: Store, image: string, options: RunOptions): Promise<RunResult> {
  const root = resolveRoot(store, image);
  // As docker run: without a command, the image's entrypoint and command.
  const strings = (value: unknown) => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
  const imageCommand = [...strings(root.image?.config.config?.Entrypoint), ...strings(root.image?.config.config?.Cmd)];
  const command = options.command.length > 0 ? options.command : imageCommand;
  if (command.length === 0) throw new Error(`no command given to run, and ${image} has none`);
  const container = await store.containers.create(root.layer, {
    ...(options.name !== undefined && { name: options.name }),
    ...(options.mounts && { mounts: options.mounts }),
    ...(options.owner !== undefined && { owner: options.owner }),
    ...(options.allowSensitiveBinds && { allowSensitiveBinds: true }),
    ...(root.image && { image: root.image.id }),
  });
  let exitCode: number;
  try {
    const rootfs = await store.containers.mount(container.id);
    try {
      const targets = new Set((options.mounts ?? []).map((m) => m.target));
      exitCode = await runInRootfs(rootfs, {
        command,
        env: { PATH, HOME: '/root' },
        hostname: shortId(container.id),
        mountDev: !targets.has('/dev'),
      });
    } finally {
      await store.containers.unmount(container.id);
    }
  } finally {
    if (options.remove) await store.containers.remove(container.id, { volumes: true });
  }
  return { containerId: container.id, exitCode };
}

/** How a process runs in a mounted root filesystem. */
export interface ProcessSpec {
  /** The command and its arguments, looked up on the environment's PATH inside the root. */
  command: readonly string[];
  env: Readonly<Record<string, string>>;
  /** The working directory inside the root (it must exist); "/" by default. */
  workdir?: string;
  /** Numeric ids to run as, supplementary groups dropped; root by default. */
  user?: { uid: number; gid: number };
  hostname: string;
  /** Mount a minimal tmpfs /dev (left mounted: it goes with the container's other mounts). */
  mountDev?: boolean;
  /** A new, empty network namespace: only a loopback that is down, no way out (as a build step). */
  isolateNetwork?: boolean;
  /** Where the command's stdout and stderr go; the terminal's when not given. */
  output?: (chunk: Buffer) => void;
}

/**
 * Runs a command chrooted into `rootfs` (a mounted container) in new mount,
 * pid and uts namespaces, with /proc for its pid namespace; resolves to its
 * exit status, 128 + the signal number if a signal ended it.
 */
export async function runInRootfs(rootfs: string, spec: ProcessSpec): Promise<number> {
  if (spec.mountDev) await mountDev(rootfs);
  await using proc = await openInTree(rootfs, '/proc', { create: true });
  const procDir = readlinkSync(`/proc/self/fd/${proc.fd}`);
  return spawnInside(rootfs, procDir, spec);
}

/** A tmpfs /dev with the usual character devices (unmounted with the container's other mounts). */
async function mountDev(rootfs: string): Promise<void> {
  await using target = await openInTree(rootfs, '/dev', { create: true });
  await using context = await fsopen('tmpfs');
  await fsconfig(context, { cmd: 'string', key: 'source', value: 'tmpfs' });
  await fsconfig(context, { cmd: 'string', key: 'mode', value: '755' });
  await fsconfig(context, { cmd: 'string', key: 'size', value: '65536k' });
  await fsconfig(context, { cmd: 'create' });
  await using mount = await fsmount(context, ['nosuid', 'noexec']);
  const dev = readlinkSync(`/proc/self/fd/${target.fd}`);
  await moveMount(mount, target);
  for (const [name, major, minor] of DEVICES) {
    mknodSync(`${dev}/${name}`, 'char', 0o666, major, minor);
    chmodSync(`${dev}/${name}`, 0o666); // mknod applies the umask
  }
}

/** A host command's absolute path, found on strata's own PATH. */
function hostTool(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(':'), ...PATH.split(':')].filter(Boolean);
  const found = dirs.map((dir) => join(dir, name)).find((path) => existsSync(path));
  if (!found) throw new Error(`${name} is not installed on this host (util-linux and a shell are needed to run containers)`);
  return found;
}

function spawnInside(rootfs: string, procDir: string, spec: ProcessSpec): Promise<number> {
  const args = [
    '--mount', '--pid', '--uts', '--fork', '--propagation', 'private',
    ...(spec.isolateNetwork ? ['--net'] : []),
    // If strata's unshare is killed, so is the command.
    '--kill-child',
    // Mounted by unshare inside the new namespaces, so it shows the container's own pids.
    `--mount-proc=${procDir}`,
    // In the new uts namespace the hostname is the container's short id, as
    // Docker's; then a second unshare (no new namespaces) chroots, changes
    // directory and drops to the user.
    // Host tools by absolute path: the environment's PATH is the container's.
    hostTool('sh'), '-c', `${hostTool('hostname')} "$0" && exec "$@"`, spec.hostname,
    hostTool('unshare'), `--root=${rootfs}`, `--wd=${spec.workdir ?? '/'}`,
    ...(spec.user ? ['--setgid', String(spec.user.gid), '--setuid', String(spec.user.uid)] : []),
    '--', ...spec.command,
  ];
  const child = spawn(hostTool('unshare'), args, {
    stdio: spec.output ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    env: { ...spec.env, HOSTNAME: spec.hostname },
  });
  for (const stream of [child.stdout, child.stderr]) stream?.on('data', (chunk: Buffer) => spec.output!(chunk));
  // The terminal's Ctrl-C reaches the command too; strata stays to clean up.
  // A SIGTERM for strata is passed on to the command, and strata cleans up after it.
  const ignore = () => {};
  const forward = () => child.kill('SIGTERM');
  process.on('SIGINT', ignore);
  process.on('SIGTERM', forward);
  return new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
