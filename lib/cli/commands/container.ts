import type { Command } from 'commander';

import { shortId, type Digest } from '../../store/digest.js';
import type { Container, ContainerStore } from '../../store/containers.js';
import { transaction } from '../../store/database.js';
import { StoreError } from '../../store/errors.js';
import type { Image } from '../../store/images.js';
import type { Store } from '../../store/store.js';
import { withStore } from '../context.js';
import { formatSize, parseFormat, printList, UsageError, type Column } from '../output.js';

interface CreateOptions {
  name?: string;
  volatile?: boolean;
  readOnly?: boolean;
  metacopy?: boolean;
  redirectDir?: boolean;
}

/** What `container inspect` shows, in docker's shape. */
function describe(containers: ContainerStore, container: Container, withSize: boolean) {
  const layout = containers.layout(container);
  return {
    Id: container.id,
    Name: container.name,
    Created: container.created,
    Layer: container.layer,
    Mounts: container.mounts,
    Options: container.options,
    GraphDriver: {
      Name: container.driver,
      Data: {
        LowerDir: containers.lowers(container).join(':'),
        UpperDir: layout.upper,
        WorkDir: layout.work,
        MergedDir: layout.merged,
      },
    },
    ...(withSize && (({ sizeRw, sizeRootFs }) => ({ SizeRw: sizeRw, SizeRootFs: sizeRootFs }))(containers.size(container.id))),
  };
}

/** The image a reference names, or undefined when it names none (it may name a layer). */
function imageNamed(store: Store, reference: string): Image | undefined {
  try {
    return store.images.resolve(reference);
  } catch (error) {
    const code = (error as StoreError).code;
    if (code === 'ERR_IMAGE_UNKNOWN' || code === 'ERR_INVALID_REFERENCE') return undefined;
    throw error;
  }
}

function layerNamed(store: Store, reference: string): Digest {
  try {
    return store.layers.resolve(reference).chainId;
  } catch (error) {
    if ((error as StoreError).code !== 'ERR_LAYER_UNKNOWN') throw error;
    throw new StoreError('ERR_IMAGE_UNKNOWN', `no such image or layer: ${reference}`);
  }
}

export function registerContainer(program: Command): void {
  const container = program.command('container').description('Manage container layers');

  container
    .command('create')
    .description("Create a writable container layer on an image's layers (or a layer) and print its id")
    .argument('<image-or-layer>', 'an image (tag, id or unique id prefix), else a layer ChainID (or unique prefix)')
    .option('--name <name>', 'a name for the container')
    .option('--volatile', 'mount without syncs; after a crash the writable layer is discarded')
    .option('--read-only', 'mount the root filesystem read-only')
    .option('--metacopy', 'copy up only metadata on metadata changes (overlay metacopy=on)')
    .option('--redirect-dir', 'record directory renames as redirects (overlay redirect_dir=on)')
    .action(async (layer: string, options: CreateOptions, command: Command) => {
      await withStore(command, async (store) => {
        const image = imageNamed(store, layer);
        if (image && !image.topLayer) throw new UsageError(`image ${shortId(image.id)} has no layers to create a container on`);
        const created = await store.containers.create(image?.topLayer ?? layerNamed(store, layer), {
          ...(options.name !== undefined && { name: options.name }),
          ...(options.volatile && { volatile: true }),
          ...(options.readOnly && { readOnly: true }),
          ...(options.metacopy && { metacopy: true }),
          ...(options.redirectDir && { redirectDir: true }),
        });
        if (image) transaction(store.db, () => store.images.recordContainerInTransaction(created.id, image.id));
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
      await withStore(command, (store) => {
        const id = (value: string) => (options.trunc ? shortId(value) : value);
        const columns: Column<Container>[] = [
          { header: 'CONTAINER ID', value: (c) => id(c.id) },
          { header: 'LAYER', value: (c) => id(c.layer) },
          { header: 'MOUNTS', value: (c) => String(c.mounts) },
          { header: 'CREATED', value: (c) => c.created },
          ...(options.size
            ? [{ header: 'SIZE', value: (c: Container) => {
                const size = store.containers.size(c.id);
                return `${formatSize(size.sizeRw)} (virtual ${formatSize(size.sizeRootFs)})`;
              } }]
            : []),
          { header: 'NAMES', value: (c) => c.name ?? '' },
        ];
        printList(process.stdout, store.containers.list(), {
          format,
          ...(options.quiet && { quiet: true }),
          columns,
          id: (c) => id(c.id),
          json: (c) => describe(store.containers, c, options.size ?? false),
        });
      });
    });

  container
    .command('inspect')
    .description('Show containers in detail (a JSON array)')
    .argument('<container...>', 'names, ids or unique id prefixes')
    .option('-s, --size', 'include SizeRw and SizeRootFs')
    .action(async (refs: string[], options: { size?: boolean }, command: Command) => {
      await withStore(command, (store) => {
        const shown = refs.map((ref) => describe(store.containers, store.containers.resolve(ref), options.size ?? false));
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
    .action(async (refs: string[], options: { force?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        for (const ref of refs) {
          const { id } = store.containers.resolve(ref);
          await store.containers.remove(id, { ...(options.force && { force: true }) });
          process.stdout.write(`${ref}\n`);
        }
      });
    });
}
