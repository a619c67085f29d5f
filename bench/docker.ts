// A private Docker engine for benchmarks: its own data root, exec root and
// socket, no network setup; stopped (and its mounts released) at the end.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { unmount } from '../lib/native/mount.js';
import { mountsBelow } from '../lib/system/mountinfo.js';

export interface Docker {
  run(args: string[], input?: Buffer): string;
  stop(): Promise<void>;
}

export async function startDocker(dir: string): Promise<Docker> {
  for (const sub of ['data', 'exec']) mkdirSync(join(dir, sub), { recursive: true });
  const socket = join(dir, 'docker.sock');
  const daemon: ChildProcess = spawn(
    'dockerd',
    ['--iptables=false', '--ip6tables=false', '--bridge=none', '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
      '-H', `unix://${socket}`, '--pidfile', join(dir, 'docker.pid'), '--storage-driver', 'overlay2'],
    { stdio: 'ignore' },
  );
  const run = (args: string[], input?: Buffer) =>
    execFileSync('docker', ['-H', `unix://${socket}`, ...args], { input, maxBuffer: 1 << 30 }).toString();
  for (let i = 0; ; i++) {
    try {
      run(['version']);
      break;
    } catch (error) {
      if (i > 300 || daemon.exitCode !== null) throw new Error(`dockerd did not start: ${String(error)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    run,
    async stop() {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
      for (const point of mountsBelow(dir).reverse()) await unmount(point, ['detach']).catch(() => {});
    },
  };
}
