#!/usr/bin/env node
// The strata command: a thin shell over the library. Data goes to stdout,
// progress and logs to stderr; failures exit non-zero with one line on stderr.
import { readFileSync } from 'node:fs';

import { Command, CommanderError } from 'commander';

import { registerBuild } from './commands/build.js';
import { registerBuilder } from './commands/builder.js';
import { registerContainer } from './commands/container.js';
import { registerImage } from './commands/image.js';
import { registerInfo } from './commands/info.js';
import { registerLayer } from './commands/layer.js';
import { registerRun } from './commands/run.js';
import { registerSystem } from './commands/system.js';
import { registerVolume } from './commands/volume.js';
import { UsageError } from './output.js';

/** The package's version: dist/cli/main.js and lib/cli/main.ts both sit two levels below package.json. */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command('strata')
    .description('Layered container storage: image layers, container layers, storage drivers, volumes')
    .version(packageVersion(), '-v, --version', 'print the version')
    .option('--root <dir>', 'store root directory (env STRATA_ROOT)', process.env.STRATA_ROOT ?? '/var/lib/stratafs')
    .option('--storage-driver <name>', 'storage driver to use (env STRATA_STORAGE_DRIVER)', process.env.STRATA_STORAGE_DRIVER)
    // Options after `run IMAGE` belong to the command run.
    .enablePositionalOptions()
    .exitOverride();
  registerInfo(program);
  registerLayer(program);
  registerContainer(program);
  registerVolume(program);
  registerRun(program);
  registerImage(program);
  registerSystem(program);
  registerBuild(program);
  registerBuilder(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.configureOutput({ writeErr: (text) => process.stderr.write(text) });
  try {
    await program.parseAsync(argv);
    // `strata run` passes on its command's exit status.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version exit 0; commander has already printed its message
      return error.exitCode === 0 ? 0 : 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`Error: ${message.split('\n')[0]}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

// Not process.exit: output still queued for a pipe (past the pipe's 64 KiB,
// to a slow reader) would be cut off.
void main(process.argv).then((code) => { process.exitCode = code; });
