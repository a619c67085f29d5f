import type { Command } from 'commander';

import { shortId } from '../../store/digest.js';
import type { Container, ContainerSize, ContainerStore } from '../../store/containers.js';
import { pruneContainers } from '../../store/prune.js';
import { resolveRoot } from '../../run/image.js';
import { withStore } from '../context.js';
import { addMountFlags, mountSpecs, type MountFlags } from './run.js';
import { formatSize, parseFormat, parseSize, printList, timeAgo, UsageError, type Column } from '../output.js';
import { collect, confirmPrune, printDeleted, printReclaimed, pruneFilters } from '../prune.js';

interface CreateOptions extends MountFlags {
  name?: string;
  label: string[];
  volatile?: boolean;
  readOnly?: boolean;
  metacopy?: boolean;
  redirectDir?: boolean;
  storageOpt: string[];
}

/** docker's --label: key=value, or a bare key with an empty value. */
function labels(values: readonly string[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid argument "${value}" for "--label" flag: expected key=value`);
    map[eq < 0 ? value : value.slice(0, eq)] = eq < 0 ? '' : value.slice(eq + 1);
  }
  return map;
}

/** docker's --storage-opt: only size=SIZE is known. */
function storageOptions(values: readonly string[]): { sizeLimit?: number } {
  const options: { sizeLimit?: number } = {};
  for (const value of values) {
    const [key, size] = value.split('=', 2);
    if (key !== 'size' || size === undefined) throw new UsageError(`unknown storage option "${value}": only size=SIZE is supported`);
    options.sizeLimit = parseSize(size);
  }
  return options;
}

/** What `container inspect` shows, in docker's shape. */
function describe(containers: ContainerStore, container: Container, size?: ContainerSize) {
  const layout = containers.layout(container);
  return {
    Id: container.id,
    Name: container.name,
    Created: container.created,
    Config: { Labels: container.labels },
    Layer: container.layer,
    Mounts: container.mounts,
    Options: container.options,
    HostConfig: { Mounts: containers.containerMounts(container).map(({ spec, volume }) => ({ ...spec, ...(volume !== null && { source: volume }) })) },
    GraphDriver: {
      Name: container.driver,
      Data: {
        LowerDir: containers.lowers(container).join(':'),
        UpperDir: layout.upper,
        ...(layout.work && { WorkDir: layout.work }),
        MergedDir: layout.merged,
      },
    },
    ...(size && { SizeRw: size.sizeRw, SizeRootFs: size.sizeRootFs }),
  };
}

/** The image a reference names, or undefined when it names none (it may name a layer). */
export function registerContainer(program: Command): void {
  const container = program.command('container').description('Manage container layers');

  addMountFlags(container
    .command('create')
    .description("Create a writable container layer on an image's layers (or a layer) and print its id")
    .argument('<image-or-layer>', 'an image (tag, id or unique id prefix), else a layer ChainID (or unique prefix)')
    .option('--name <name>', 'a name for the container')
    .option('-l, --label <label>', 'set metadata, key=value (repeatable)', collect, [])
    .option('--volatile', 'mount without syncs; after a crash the writable layer is discarded')
    .option('--read-only', 'mount the root filesystem read-only')
    .option('--metacopy', 'copy up only metadata on metadata changes (overlay metacopy=on)')
    .option('--redirect-dir', 'record directory renames as redirects (overlay redirect_dir=on)')
    .option('--storage-opt <opt>', 'size=SIZE: limit the container\'s changes (btrfs)', (v: string, all: string[]) => [...all, v], [] as string[]))
    .action(async (layer: string, options: CreateOptions, command: Command) => {
      const mounts = mountSpecs(options);
      await withStore(command, async (store) => {
        const root = resolveRoot(store, layer);
        const created = await store.containers.create(root.layer, {
          ...(options.name !== undefined && { name: options.name }),
          labels: labels(options.label),
          ...(options.volatile && { volatile: true }),
          ...(options.readOnly && { readOnly: true }),
          ...(options.metacopy && { metacopy: true }),
          ...(options.redirectDir && { redirectDir: true }),
          ...storageOptions(options.storageOpt),
          mounts,
          ...(options.owner !== undefined && { owner: options.owner }),
          ...(options.allowSensitiveBinds && { allowSensitiveBinds: true }),
          ...(root.image && { image: root.image.id }),
        });
        process.stdout.write(`${created.id}\n`);
      });
    });

  container
    .command('ls')
    .description('List containers')
    .option('--format <format>', 'table or json', 'table')
    .option('-q, --quiet', 'only print ids')
    .option('-s, --size', 'show sizes')
    .option('--no-trunc', "don't truncate ids")
    .action(async (options: { format: string; quiet?: boolean; size?: boolean; trunc: boolean }, command: Command) => {
      const format = parseFormat(options.format);
      await withStore(command, async (store) => {
        const containers = store.containers.list();
        const sizes = new Map<string, ContainerSize>();
        if (options.size) for (const c of containers) sizes.set(c.id, await store.containers.size(c.id));
        const id = (value: string) => (options.trunc ? shortId(value) : value);
        const columns: Column<Container>[] = [
          { header: 'CONTAINER ID', value: (c) => id(c.id) },
          { header: 'LAYER', value: (c) => id(c.layer) },
          { header: 'MOUNTS', value: (c) => String(c.mounts) },
          { header: 'CREATED', value: (c) => timeAgo(c.created) },
          ...(options.size
            ? [{ header: 'SIZE', value: (c: Container) => {
                const size = sizes.get(c.id)!;
                return `${formatSize(size.sizeRw)} (virtual ${formatSize(size.sizeRootFs)})`;
              } }]
            : []),
          { header: 'NAMES', value: (c) => c.name ?? '' },
        ];
        printList(process.stdout, containers, {
          format,
          ...(options.quiet && { quiet: true }),
          columns,
          id: (c) => id(c.id),
          json: (c) => describe(store.containers, c, sizes.get(c.id)),
        });
      });
    });

  container
    .command('inspect')
    .description('Show containers in detail (a JSON array)')
    .argument('<container...>', 'names, ids or unique id prefixes')
    .option('-s, --size', 'include SizeRw and SizeRootFs')
    .action(async (refs: string[], options: { size?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        const shown = [];
        for (const ref of refs) {
          const container = store.containers.resolve(ref);
          shown.push(describe(store.containers, container, options.size ? await store.containers.size(container.id) : undefined));
        }
        process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      });
    });

  container
    .command('mount')
    .description("Mount a container's root filesystem and print its path")
    .argument('<container>', 'name, id or unique id prefix')
    .action(async (ref: string, _options: unknown, command: Command) => {
      await withStore(command, async (store) => process.stdout.write(`${await store.containers.mount(ref)}\n`));
    });

  container
    .command('unmount')
    .alias('umount')
    .description("Drop a mount of a container's root filesystem (the last one unmounts it)")
    .argument('<container>', 'name, id or unique id prefix')
    .action(async (ref: string, _options: unknown, command: Command) => {
      await withStore(command, (store) => store.containers.unmount(ref));
    });

  container
    .command('diff')
    .description("List the container's changes: A added, C changed, D deleted")
    .argument('<container>', 'name, id or unique id prefix')
    .action(async (ref: string, _options: unknown, command: Command) => {
      await withStore(command, async (store) => {
        for (const change of await store.containers.changes(ref)) process.stdout.write(`${change.kind} ${change.path}\n`);
      });
    });

  container
    .command('commit')
    .description("Make the container's changes a new layer and print its ChainID")
    .argument('<container>', 'name, id or unique id prefix')
    .action(async (ref: string, _options: unknown, command: Command) => {
      await withStore(command, async (store) => {
        const { layer } = await store.containers.commit(ref);
        process.stdout.write(`${layer.chainId}\n`);
      });
    });

  container
    .command('rm')
    .description('Remove containers and their writable layers')
    .argument('<container...>', 'names, ids or unique id prefixes')
    .option('-f, --force', 'detach a busy mount lazily instead of failing')
    .option('-v, --volumes', 'remove the anonymous volumes of the container too')
    .action(async (refs: string[], options: { force?: boolean; volumes?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        for (const ref of refs) {
          const { id } = store.containers.resolve(ref);
          await store.containers.remove(id, { ...(options.force && { force: true }), ...(options.volumes && { volumes: true }) });
          process.stdout.write(`${ref}\n`);
        }
      });
    });

  container
    .command('prune')
    .description('Remove all containers that are not mounted')
    .option('--filter <filter>', 'until=<timestamp|duration>, label=key[=value], label!=key[=value] (repeatable)', collect, [])
    .option('-f, --force', 'do not prompt for confirmation')
    .action(async (options: { filter: string[]; force?: boolean }, command: Command) => {
      const filters = pruneFilters(options.filter, ['until', 'label', 'label!']);
      if (!(await confirmPrune('WARNING! This will remove all containers that are not mounted.', options.force))) return;
      await withStore(command, async (store) => {
        const result = await pruneContainers(store, filters);
        printDeleted(process.stdout, 'Deleted Containers', result.deleted);
        printReclaimed(process.stdout, result.spaceReclaimed);
      });
    });
}
