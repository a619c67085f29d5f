import type { Command } from 'commander';

import type { Store } from '../../store/store.js';
import type { Volume, VolumeFilters } from '../../store/volumes.js';
import { withStore } from '../context.js';
import { parseFormat, printList, UsageError } from '../output.js';
import { collect, confirmPrune, printDeleted, printReclaimed, pruneFilters } from '../prune.js';


/** "key=value" flags (--label, --opt) into a map; a bare key has an empty value. */
function pairs(values: readonly string[], flag: string, requireValue: boolean): Record<string, string> {
  const map: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq === 0 || (eq < 0 && requireValue)) throw new UsageError(`invalid argument "${value}" for "${flag}" flag: expected key=value`);
    map[eq < 0 ? value : value.slice(0, eq)] = eq < 0 ? '' : value.slice(eq + 1);
  }
  return map;
}

/** docker volume ls --filter: dangling, name, label, driver. */
function listFilters(values: readonly string[]): VolumeFilters {
  const filters: VolumeFilters = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad format of filter (expected name=value): ${value}`);
    const key = value.slice(0, eq);
    const arg = value.slice(eq + 1);
    switch (key) {
      case 'dangling':
        if (!['true', 'false', '1', '0'].includes(arg)) throw new UsageError(`invalid filter 'dangling=${arg}'`);
        filters.dangling = arg === 'true' || arg === '1';
        break;
      case 'name':
      case 'label':
      case 'driver':
        (filters[key] ??= []).push(arg);
        break;
      default:
        throw new UsageError(`invalid filter '${key}'`);
    }
  }
  return filters;
}

/** What `volume inspect` shows, in docker's shape. */
function describe(store: Store, volume: Volume, withSize: boolean) {
  return {
    CreatedAt: volume.created,
    Driver: volume.driver,
    Labels: volume.labels,
    Mountpoint: volume.mountpoint,
    Name: volume.name,
    Options: Object.keys(volume.options).length > 0 ? volume.options : null,
    Scope: 'local',
    ...(volume.owner !== null && { Owner: volume.owner }),
    ...(withSize && { UsageData: { Size: store.volumes.size(volume.name), RefCount: store.volumes.users(volume.name).length } }),
  };
}

export function registerVolume(program: Command): void {
  const volume = program.command('volume').description('Manage volumes');

  volume
    .command('create')
    .description('Create a volume and print its name (a random one without VOLUME)')
    .argument('[volume]', 'the name')
    .option('-d, --driver <driver>', 'volume driver (only "local")', 'local')
    .option('-l, --label <label>', 'set metadata, key=value (repeatable)', collect, [])
    .option('-o, --opt <option>', 'driver option: type, device, o (repeatable)', collect, [])
    .option('--owner <owner>', 'the tenant the volume belongs to')
    .option('--allow-sensitive-binds', 'allow a bind (o=bind) of a sensitive host path')
    .action(async (name: string | undefined, options: { driver: string; label: string[]; opt: string[]; owner?: string; allowSensitiveBinds?: boolean }, command: Command) => {
      if (options.driver !== 'local') throw new UsageError(`volume driver "${options.driver}" is not supported: only "local" is`);
      const labels = pairs(options.label, '--label', false);
      const driverOptions = pairs(options.opt, '--opt', true);
      await withStore(command, async (store) => {
        const created = await store.volumes.create(name, {
          labels,
          options: driverOptions,
          ...(options.owner !== undefined && { owner: options.owner }),
          ...(options.allowSensitiveBinds && { allowSensitiveBinds: true }),
        });
        process.stdout.write(`${created.name}\n`);
      });
    });

  volume
    .command('ls')
    .alias('list')
    .description('List volumes')
    .option('-f, --filter <filter>', 'dangling=true|false, name=..., label=key[=value], driver=local (repeatable)', collect, [])
    .option('--format <format>', 'table or json', 'table')
    .option('-q, --quiet', 'only print names')
    .action(async (options: { filter: string[]; format: string; quiet?: boolean }, command: Command) => {
      const format = parseFormat(options.format);
      const filters = listFilters(options.filter);
      await withStore(command, (store) => {
        printList(process.stdout, store.volumes.list(filters), {
          format,
          ...(options.quiet && { quiet: true }),
          columns: [
            { header: 'DRIVER', value: (v) => v.driver },
            { header: 'VOLUME NAME', value: (v) => v.name },
          ],
          id: (v) => v.name,
          json: (v) => describe(store, v, false),
        });
      });
    });

  volume
    .command('inspect')
    .description('Show volumes in detail (a JSON array)')
    .argument('<volume...>', 'names')
    .option('-s, --size', 'include UsageData (Size, RefCount)')
    .action(async (names: string[], options: { size?: boolean }, command: Command) => {
      await withStore(command, (store) => {
        const shown = names.map((name) => describe(store, store.volumes.resolve(name), options.size ?? false));
        process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      });
    });

  volume
    .command('rm')
    .alias('remove')
    .description('Remove volumes; one a container uses is refused, even with -f')
    .argument('<volume...>', 'names')
    .option('-f, --force', 'no error for a missing volume; drop the metadata even if the data cannot be removed')
    .action(async (names: string[], options: { force?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        let failure: unknown;
        for (const name of names) {
          try {
            await store.volumes.remove(name, { ...(options.force && { force: true }) });
            process.stdout.write(`${name}\n`);
          } catch (error) {
            failure ??= error;
          }
        }
        if (failure) throw failure;
      });
    });

  volume
    .command('prune')
    .description('Remove unused anonymous volumes (with --all, unused named ones too)')
    .option('-a, --all', 'remove unused named volumes too')
    .option('--filter <filter>', 'label=key[=value] or label!=key[=value] (repeatable)', collect, [])
    .option('-f, --force', 'do not prompt for confirmation')
    .action(async (options: { all?: boolean; filter: string[]; force?: boolean }, command: Command) => {
      const filters = pruneFilters(options.filter, ['label', 'label!']);
      const warning = options.all
        ? 'WARNING! This will remove all local volumes not used by at least one container.'
        : 'WARNING! This will remove anonymous local volumes not used by at least one container.';
      if (!(await confirmPrune(warning, options.force))) return;
      await withStore(command, async (store) => {
        const result = await store.volumes.prune({ ...(options.all && { all: true }), ...filters });
        printDeleted(process.stdout, 'Deleted Volumes', result.deleted);
        printReclaimed(process.stdout, result.spaceReclaimed);
      });
    });
}
