import type { Command } from 'commander';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { build, BuildError } from '../../build/builder.js';
import { BuildContext } from '../../build/context.js';
import { withStore } from '../context.js';
import { UsageError } from '../output.js';

const collect = (value: string, previous: string[]) => [...previous, value];

interface BuildFlags {
  tag: string[];
  file?: string;
  cache: boolean;
  buildArg: string[];
  secret: string[];
  quiet?: boolean;
}

/** --build-arg K=V (or K alone: its value from strata's environment, as docker does). */
function parseBuildArgs(values: readonly string[]): Record<string, string> {
  const args: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf('=');
    if (at === 0) throw new UsageError(`invalid --build-arg "${value}": use NAME=VALUE`);
    if (at > 0) args[value.slice(0, at)] = value.slice(at + 1);
    else if (process.env[value] !== undefined) args[value] = process.env[value]!;
  }
  return args;
}

/** --secret id=NAME,src=PATH (as docker buildx; "source" and "env" are not taken). */
function parseSecrets(values: readonly string[]): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const value of values) {
    const fields = new Map(value.split(',').map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)] as const));
    const id = fields.get('id');
    const src = fields.get('src') ?? fields.get('source');
    if (!id || !src) throw new UsageError(`invalid --secret "${value}": use id=NAME,src=FILE`);
    if (!statSync(src, { throwIfNoEntry: false })?.isFile()) throw new UsageError(`invalid --secret "${value}": ${src} is not a file`);
    secrets[id] = resolve(src);
  }
  return secrets;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description("Build an image from a Dockerfile, each step a layer, reusing cached steps (docker's classic builder)")
    .argument('<context>', 'the build context directory')
    .option('-t, --tag <name>', 'name[:tag] for the image (repeatable)', collect, [])
    .option('-f, --file <file>', 'the Dockerfile (default: CONTEXT/Dockerfile)')
    .option('--no-cache', 'run every step, reusing nothing from the build cache')
    .option('--build-arg <arg>', 'NAME=VALUE for an ARG (repeatable)', collect, [])
    .option('--secret <spec>', 'id=NAME,src=FILE: a secret for RUN --mount=type=secret (repeatable)', collect, [])
    .option('-q, --quiet', 'print only the image id')
    .action(async (contextDir: string, flags: BuildFlags, command: Command) => {
      if (!statSync(contextDir, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`the build context ${contextDir} is not a directory`);
      const buildArgs = parseBuildArgs(flags.buildArg);
      const secrets = parseSecrets(flags.secret);
      const file = flags.file ?? join(contextDir, 'Dockerfile');
      let dockerfile: string;
      try {
        dockerfile = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (error) {
        throw new UsageError(`cannot read the Dockerfile ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      // Read while the store opens (the listing runs on another thread); a failure is reported where it is awaited.
      const context = BuildContext.open(contextDir);
      context.catch(() => {});
      try {
        const { image } = await withStore(command, async (store) =>
          build(store, {
            dockerfile,
            context: await context,
            tags: flags.tag,
            noCache: !flags.cache,
            buildArgs,
            secrets,
            ...(!flags.quiet && { output: (text: string | Buffer) => void process.stdout.write(text) }),
          }),
        );
        if (flags.quiet) process.stdout.write(`${image.id}\n`);
      } catch (error) {
        // As docker: a failed RUN's exit status is the command's.
        if (error instanceof BuildError && error.exitCode !== 1) {
          process.stderr.write(`Error: ${error.message}\n`);
          process.exitCode = error.exitCode;
          return;
        }
        throw error;
      }
    });
}
