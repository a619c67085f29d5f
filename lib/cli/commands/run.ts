import { Command, Option } from 'commander';

import { MountSpecError, parseMountFlag, parseVolumeFlag, type MountSpec } from '../../mounts/spec.js';
import { runContainer } from '../../run/runner.js';
import { withStore } from '../context.js';
import { UsageError } from '../output.js';

export interface MountFlags {
  mount: string[];
  volume: string[];
  owner?: string;
  allowSensitiveBinds?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Adds --mount, -v, --owner and --allow-sensitive-binds, as `docker create`/`run` have the first two. */
export function addMountFlags(command: Command): Command {
  return command
    .addOption(new Option('--mount <spec>', 'attach a filesystem mount: type=volume|bind|tmpfs,source=...,target=...[,readonly,...] (repeatable)').argParser(collect).default([]))
    .addOption(new Option('-v, --volume <spec>', 'bind mount a volume or host path: [SOURCE:]TARGET[:OPTIONS] (repeatable)').argParser(collect).default([]))
    .option('--owner <owner>', 'the tenant the container belongs to: it can mount only its own or shared volumes')
    .option('--allow-sensitive-binds', 'allow bind mounts of /, /etc, /proc, /sys, /dev, the store root and runtime sockets');
}

/** The mounts the flags describe, parsed as Docker's CLI does; a bad one is a usage error naming its flag. */
export function mountSpecs(flags: MountFlags): MountSpec[] {
  const parse = (flag: string, value: string, parser: (value: string) => MountSpec) => {
    try {
      return parser(value);
    } catch (error) {
      if (error instanceof MountSpecError) throw new UsageError(`invalid argument "${value}" for "${flag}" flag: ${error.message}`);
      throw error;
    }
  };
  return [
    ...flags.mount.map((value) => parse('--mount', value, (v) => parseMountFlag(v))),
    ...flags.volume.map((value) => parse('-v, --volume', value, (v) => parseVolumeFlag(v))),
  ];
}

interface RunFlags extends MountFlags {
  rm?: boolean;
  name?: string;
}

export function registerRun(program: Command): void {
  addMountFlags(
    program
      .command('run')
      .description("Run a command in a new container's root filesystem, with its mounts (chroot + mount/pid/uts namespaces)")
      .argument('<image>', 'image (tag, id or unique prefix) or layer ChainID to run')
      .argument('[command...]', "the command and its arguments (default: the image's entrypoint and command)")
      // Options after IMAGE belong to the command.
      .passThroughOptions()
      .option('--rm', 'remove the container and its anonymous volumes when the command ends')
      .option('--name <name>', 'a name for the container'),
  ).action(async (image: string, commandArgs: string[], flags: RunFlags, command: Command) => {
    const mounts = mountSpecs(flags);
    const { exitCode } = await withStore(command, (store) =>
      runContainer(store, image, {
        command: commandArgs,
        mounts,
        ...(flags.rm && { remove: true }),
        ...(flags.name !== undefined && { name: flags.name }),
        ...(flags.owner !== undefined && { owner: flags.owner }),
        ...(flags.allowSensitiveBinds && { allowSensitiveBinds: true }),
      }),
    );
    process.exitCode = exitCode;
  });
}
