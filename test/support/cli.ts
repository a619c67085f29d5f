// Runs the strata command as a user would, from the TypeScript sources,
// bundled once per test process so that each command starts as fast as the
// installed one.
import { spawnSync } from 'node:child_process';

import { bundleScript } from './bundle.js';

let main: string | undefined;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function strata(args: string[], options: { input?: Buffer | string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  main ??= bundleScript('lib/cli/main.ts');
  const result = spawnSync(process.execPath, [main, ...args], {
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
    maxBuffer: 256 * 1024 * 1024,
  });
  return { code: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}
