// `strata run`: a storage demonstrator, not a runtime. It mounts a container's
// root filesystem and mounts, runs one command chrooted into it in new mount,
// pid and uts namespaces (no network namespace setup, no cgroups), then
// unmounts. Node cannot unshare in-process (namespaces are per thread), so
// util-linux's unshare does it, in a child process.
import { spawn } from 'node:child_process';
import { chmodSync, readlinkSync } from 'node:fs';
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
      if (!targets.has('/dev')) await mountDev(rootfs);
      await using proc = await openInTree(rootfs, '/proc', { create: true });
      const procDir = readlinkSync(`/proc/self/fd/${proc.fd}`);
      exitCode = await spawnInside(rootfs, procDir, command, shortId(container.id));
    } finally {
      await store.containers.unmount(container.id);
    }
  } finally {
    if (options.remove) await store.containers.remove(container.id, { volumes: true });
  }
  return { containerId: container.id, exitCode };
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

function spawnInside(rootfs: string, procDir: string, command: readonly string[], hostname: string): Promise<number> {
  const args = [
    '--mount', '--pid', '--uts', '--fork', '--propagation', 'private',
    // If strata's unshare is killed, so is the command.
    '--kill-child',
    // Mounted by unshare inside the new namespaces, so it shows the container's own pids.
    `--mount-proc=${procDir}`,
    // In the new uts namespace the hostname is the container's short id, as Docker's.
    'sh', '-c', 'hostname "$0" && exec chroot "$@"', hostname, rootfs, ...command,
  ];
  const child = spawn('unshare', args, { stdio: 'inherit', env: { PATH, HOME: '/root', HOSTNAME: hostname } });
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
