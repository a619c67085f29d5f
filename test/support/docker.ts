// A private Docker engine for interop tests: its own data root, exec root and
// socket below the test base, no network set-up (no iptables, no bridge).
// It is stopped, and whatever it left mounted is detached, after the suite.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { unmount } from '../../lib/native/mount.js';
import { mountsBelow } from '../../lib/system/mountinfo.js';
import { type Cleanups, scratchDir } from './fixtures.js';

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

export const dockerAvailable = onPath('dockerd') && onPath('docker');
export const BUSYBOX = '/bin/busybox';

export class PrivateDocker {
  private constructor(
    readonly dir: string,
    private readonly daemon: ChildProcess,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /**
   * Starts dockerd and waits until it answers; stopped by `cleanups`. Its data
   * goes below `parent` (a benchmark's filesystem) or the test base.
   */
  static async start(cleanups: Cleanups, parent?: string): Promise<PrivateDocker> {
    const dir = parent ? mkdtempSync(join(parent, 'docker-')) : scratchDir(cleanups, 'docker');
    for (const sub of ['data', 'exec', 'config']) mkdirSync(join(dir, sub));
    const socket = join(dir, 'docker.sock');
    const log = openSync(join(dir, 'dockerd.log'), 'a');
    const daemon = spawn(
      'dockerd',
      [
        '--iptables=false',
        '--ip-masq=false',
        '--bridge=none',
        '--storage-driver=overlay2',
        `--data-root=${join(dir, 'data')}`,
        `--exec-root=${join(dir, 'exec')}`,
        `--pidfile=${join(dir, 'dockerd.pid')}`,
        `--host=unix://${socket}`,
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log); // dockerd has its own copy; ours would keep a benchmark's filesystem busy

    // DOCKER_CONFIG: the CLI keeps no state in the user's home.
    const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dir, 'config'), DOCKER_BUILDKIT: '0' };
    const docker = new PrivateDocker(dir, daemon, env);
    cleanups.defer(() => docker.stop());
    for (let attempt = 0; ; attempt++) {
      if (daemon.exitCode !== null) throw new Error(`dockerd exited: ${docker.log()}`);
      if (spawnSync('docker', ['version'], { env }).status === 0) break;
      if (attempt > 300) throw new Error(`dockerd did not answer within a minute: ${docker.log()}`);
      await sleep(200);
    }
    return docker;
  }

  log(): string {
    return readFileSync(join(this.dir, 'dockerd.log'), 'utf8').split('\n').slice(-20).join('\n');
  }

  /** Runs the docker CLI against this engine; throws with its stderr on failure. */
  run(args: string[], options: { input?: Buffer | string; cwd?: string } = {}): string {
    return execFileSync('docker', args, {
      env: this.env,
      input: options.input ?? '',
      ...(options.cwd && { cwd: options.cwd }),
      maxBuffer: 1 << 30,
      stdio: ['pipe', 'pipe', 'pipe'],
    }).toString();
  }

  /** The image a tarball makes: `docker import` of a directory's contents. */
  importDir(dir: string, tag: string): string {
    const tar = execFileSync('tar', ['--numeric-owner', '-C', dir, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
    return this.run(['import', '-', tag], { input: tar }).trim();
  }

  private async stop(): Promise<void> {
    if (this.daemon.exitCode === null) {
      const exited = new Promise((resolve) => this.daemon.once('exit', resolve));
      this.daemon.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
      if (!stopped) {
        this.daemon.kill('SIGKILL');
        await exited;
      }
    }
    // A killed daemon leaves its containerd behind.
    const containerdPid = join(this.dir, 'exec', 'containerd', 'containerd.pid');
    if (existsSync(containerdPid)) {
      const pid = Number(readFileSync(containerdPid, 'utf8'));
      try {
        if (pid > 0) process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const point of mountsBelow(this.dir).reverse()) await unmount(point, ['detach']);
  }
}
