// Test fixtures that make real kernel objects (directories, tmpfs mounts) and a
// cleanup stack that releases them, in reverse order, even when a test fails.
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { mount, unmount } from '../../lib/native/mount.js';
import { mountsBelow } from '../../lib/system/mountinfo.js';

export { mountsBelow };

/** Everything a test run creates lives below this directory. */
export const testBase = join(tmpdir(), `strata-test-${process.pid}`);

export const isRoot = process.getuid?.() === 0;

type Cleanup = () => unknown;

/** A LIFO stack of cleanups; `release()` runs them all and reports the first failure. */
export class Cleanups {
  private readonly stack: Cleanup[] = [];

  defer(fn: Cleanup): void {
    this.stack.push(fn);
  }

  async release(): Promise<void> {
    let first: unknown;
    for (let fn = this.stack.pop(); fn; fn = this.stack.pop()) {
      try {
        await fn();
      } catch (error) {
        first ??= error;
      }
    }
    if (first) throw first;
  }
}

/** A fresh empty directory below testBase, removed on cleanup. */
export function scratchDir(cleanups: Cleanups, name = 'dir'): string {
  // Made on first use, and removed with its last directory, so a process that
  // only imports the fixtures (a benchmark) leaves nothing in /tmp.
  mkdirSync(testBase, { recursive: true });
  const dir = mkdtempSync(join(testBase, `${name}-`));
  cleanups.defer(() => {
    rmSync(dir, { recursive: true, force: true });
    if (readdirSync(testBase).length === 0) rmdirSync(testBase);
  });
  return dir;
}

/** A tmpfs mounted on a fresh directory, unmounted and removed on cleanup. */
export async function tmpfsDir(cleanups: Cleanups, size = '256m'): Promise<string> {
  const dir = scratchDir(cleanups, 'tmpfs');
  await mount(dir, { source: 'tmpfs', fstype: 'tmpfs', data: `size=${size},mode=0755` });
  cleanups.defer(() => unmount(dir, ['detach']));
  return dir;
}

/**
 * Skips the current test or suite when a kernel feature is missing, with the
 * reason. Under CI=true the reporter counts every skip as a failure.
 */
export function requireFeature(ctx: Mocha.Context, available: boolean, reason: string): void {
  if (!available) {
    // In a beforeEach hook the skipped test is currentTest (ctx.test is the hook).
    const test = ctx.currentTest ?? ctx.test;
    test?.title && (test.title += ` (skipped: ${reason})`);
    ctx.skip();
  }
}

/** What `promise` rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<NodeJS.ErrnoException & { command?: string }> {
  return promise.then(
    () => expect.fail('expected a rejection'),
    (error: unknown) => error as NodeJS.ErrnoException & { command?: string },
  );
}

/**
 * This process's open fds that refer to `dir` or anything below it. Counting
 * only those (not every fd) keeps a leak check free of other tests' streams.
 */
export function fdsBelow(dir: string): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target === dir || target.startsWith(`${dir}/`)) targets.push(target);
    } catch {
      // closed while listing
    }
  }
  return targets;
}
