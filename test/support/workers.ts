// Runs store-worker.ts processes and keeps the ledger of what they reported
// done, to check against the store afterwards.
import { expect } from 'chai';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

import type { Store } from '../../lib/store/store.js';
import type { WorkerKind, WorkerResult } from './store-worker.js';

export interface Worker {
  process: ChildProcessWithoutNullStreams;
  /** Resolves once the worker has the store open. */
  ready: Promise<void>;
  /** Lets a worker started with `held` begin its rounds. */
  start(): void;
  /** Resolves when it has exited: its exit code (null if killed), its complete output lines, its stderr. */
  done: Promise<{ code: number | null; lines: string[]; stderr: string }>;
}

/** Starts a worker; one `held` waits with the store open until start() is called. */
export function startWorker(bundle: string, root: string, kind: WorkerKind, rounds?: number, options: { held?: boolean } = {}): Worker {
  const child = spawn(process.execPath, [bundle, root, kind, ...(rounds === undefined ? [] : [String(rounds)])], { stdio: ['pipe', 'pipe', 'pipe'] });
  // The worker begins its rounds when its stdin ends.
  if (!options.held) child.stdin.end();
  let out = '';
  let stderr = '';
  let signalReady: () => void;
  const ready = new Promise<void>((resolve) => (signalReady = resolve));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    if (out.startsWith('ready\n')) signalReady();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<{ code: number | null; lines: string[]; stderr: string }>((resolve) => {
    child.once('close', (code) => {
      signalReady(); // a worker that failed to start is never ready
      // A line cut short by the kill was not reported.
      const lines = out.split('\n').slice(0, -1);
      resolve({ code, lines, stderr });
    });
  });
  return { process: child, ready, start: () => child.stdin.end(), done };
}

type Kind = 'layers' | 'images' | 'containers' | 'volumes';

/** What must be in the store (true) or gone from it (false): the last report about each object wins; one being removed may be either. */
export class Ledger {
  private readonly expected = new Map<string, { kind: Kind; present: boolean; op: string }>();
  reports = 0;

  add(lines: readonly string[]): void {
    for (const line of lines.filter((l) => l.startsWith('{'))) {
      const result = JSON.parse(line) as WorkerResult;
      this.reports++;
      for (const [kind, ids] of Object.entries(result.present ?? {})) for (const id of ids) this.expected.set(id, { kind: kind as Kind, present: true, op: result.op });
      for (const [kind, ids] of Object.entries(result.absent ?? {})) for (const id of ids) this.expected.set(id, { kind: kind as Kind, present: false, op: result.op });
      for (const ids of Object.values(result.removing ?? {})) for (const id of ids) this.expected.delete(id);
    }
  }

  /** Every reported result as it should be; returns the mismatches. */
  check(store: Store): string[] {
    const wrong: string[] = [];
    for (const [id, { kind, present, op }] of this.expected) {
      const found = {
        layers: () => store.layers.get(id as `sha256:${string}`),
        images: () => store.images.get(id as `sha256:${string}`),
        containers: () => store.containers.get(id),
        volumes: () => store.volumes.get(id),
      }[kind]() !== undefined;
      if (found !== present) wrong.push(`${kind} ${id} reported ${present ? 'made' : 'removed'} by ${op} is ${found ? 'present' : 'missing'}`);
    }
    return wrong;
  }
}

/** Loop devices attached to files below `dir`. */
export function loopsBacking(dir: string): string[] {
  const loops: string[] = [];
  for (const name of readdirSync('/sys/block').filter((n) => n.startsWith('loop'))) {
    try {
      const backing = readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
      if (backing.startsWith(`${dir}/`)) loops.push(`/dev/${name} (${backing})`);
    } catch {
      // not attached
    }
  }
  return loops;
}

/** Asserts the worker ended by itself without an unexpected error. */
export function expectClean(result: { code: number | null; stderr: string }, what: string): void {
  expect(result.code, `${what}: ${result.stderr}`).to.equal(0);
}
