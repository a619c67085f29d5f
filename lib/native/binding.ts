// Loads the addon (a local build, or the bundled prebuild) and checks that it is
// the one this code was written for: a stale build/ can shadow a prebuild.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type { NativeBinding } from './types.js';

export const ABI_VERSION = 11;

const require = createRequire(import.meta.url);
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const load = require('node-gyp-build') as (dir: string) => unknown;

function loadBinding(): NativeBinding {
  const binding = load(packageRoot) as Partial<NativeBinding>;
  if (binding.abiVersion !== ABI_VERSION) {
    throw new Error(
      `stratafs native addon has ABI ${String(binding.abiVersion)}, expected ${ABI_VERSION}: ` +
        'rebuild it (npm run build:native) or remove the stale build/ directory',
    );
  }
  return binding as NativeBinding;
}

export const native: NativeBinding = loadBinding();

/**
 * Gives an error raised on a worker thread the caller's stack (V8's async
 * frames included), as fs/promises does; native errors have none.
 */
export async function withCallerStack<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof Error) Error.captureStackTrace(error, withCallerStack);
    throw error;
  }
}
