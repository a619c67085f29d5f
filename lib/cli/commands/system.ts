import type { Command } from 'commander';

import { shortId, type Digest } from '../../store/digest.js';
import { pruneSystem } from '../../store/prune.js';
import { diskUsage, type DiskUsage, type UsageCategory } from '../../store/usage.js';
import { withStore } from '../context.js';
import { formatJsonLines, formatSize, formatTable, parseFormat, timeAgo, UsageError } from '../output.js';
import { collect, confirmPrune, printDeleted, printReclaimed, pruneFilters } from '../prune.js';
import { registerFsck } from './fsck.js';
import { imagePruneLines } from './image.js';

/** docker's RECLAIMABLE cell: the size, with its share of the total when there is one. */
function reclaimable(category: UsageCategory<unknown>): string {
  const size = formatSize(category.reclaimable);
  return category.totalSize > 0 ? `${size} (${Math.floor((category.reclaimable * 100) / category.totalSize)}%)` : size;
}

const summaryRows = (usage: DiskUsage) =>
  [
    ['Images', usage.images],
    ['Containers', usage.containers],
    ['Local Volumes', usage.volumes],
    ['Build Cache', usage.buildCache],
  ] as const;

function printSummary(usage: DiskUsage): void {
  process.stdout.write(
    formatTable(summaryRows(usage), [
      { header: 'TYPE', value: ([type]) => type },
      { header: 'TOTAL', value: ([, c]) => String(c.totalCount) },
      { header: 'ACTIVE', value: ([, c]) => String(c.activeCount) },
      { header: 'SIZE', value: ([, c]) => formatSize(c.totalSize) },
      { header: 'RECLAIMABLE', value: ([, c]) => reclaimable(c) },
    ]),
  );
}

/** docker system df -v: a table per type. */
function printVerbose(usage: DiskUsage): void {
  const out = process.stdout;
  const images = usage.images.items.flatMap((image) =>
    (image.tags.length === 0 ? ['<none>:<none>'] : image.tags).map((tag) => ({ image, repository: tag.slice(0, tag.lastIndexOf(':')), tag: tag.slice(tag.lastIndexOf(':') + 1) })),
  );
  out.write('Images space usage:\n\n');
  out.write(
    formatTable(images, [
      { header: 'REPOSITORY', value: (r) => r.repository },
      { header: 'TAG', value: (r) => r.tag },
      { header: 'IMAGE ID', value: (r) => shortId(r.image.id) },
      { header: 'CREATED', value: (r) => timeAgo(r.image.created) },
      { header: 'SIZE', value: (r) => formatSize(r.image.size) },
      { header: 'SHARED SIZE', value: (r) => formatSize(r.image.sharedSize) },
      { header: 'UNIQUE SIZE', value: (r) => formatSize(r.image.uniqueSize) },
      { header: 'CONTAINERS', value: (r) => String(r.image.containers) },
    ]),
  );
  const tagOf = new Map(usage.images.items.map((image) => [image.id, image.tags[0]]));
  const imageName = (id: Digest | null) => (id === null ? '<none>' : (tagOf.get(id) ?? shortId(id)));
  out.write('\nContainers space usage:\n\n');
  out.write(
    formatTable(usage.containers.items, [
      { header: 'CONTAINER ID', value: (c) => shortId(c.id) },
      { header: 'IMAGE', value: (c) => imageName(c.image) },
      { header: 'LOCAL VOLUMES', value: (c) => String(c.volumes.length) },
      { header: 'SIZE', value: (c) => formatSize(c.sizeRw) },
      // docker's df hides it (its ps -s shows it); here it saves a second command.
      { header: 'VIRTUAL SIZE', value: (c) => formatSize(c.sizeRootFs) },
      { header: 'CREATED', value: (c) => timeAgo(c.created) },
      { header: 'STATUS', value: (c) => (c.mounts > 0 ? `Mounted (${c.mounts})` : 'Not mounted') },
      { header: 'NAMES', value: (c) => c.name ?? '' },
    ]),
  );
  out.write('\nLocal Volumes space usage:\n\n');
  out.write(
    formatTable(usage.volumes.items, [
      { header: 'VOLUME NAME', value: (v) => v.name },
      { header: 'LINKS', value: (v) => String(v.links) },
      { header: 'SIZE', value: (v) => (v.size < 0 ? 'N/A' : formatSize(v.size)) },
    ]),
  );
  out.write(`\nBuild cache usage: ${formatSize(usage.buildCache.totalSize)}\n\n`);
  out.write(
    formatTable(usage.buildCache.items, [
      { header: 'CACHE ID', value: (b) => b.id.slice(0, 12) },
      { header: 'CACHE TYPE', value: (b) => b.type },
      { header: 'SIZE', value: (b) => formatSize(b.size) },
      { header: 'CREATED', value: (b) => timeAgo(b.created) },
      { header: 'LAST USED', value: (b) => (b.lastUsed ? timeAgo(b.lastUsed) : '') },
      { header: 'SHARED', value: (b) => String(b.shared) },
    ]),
  );
}

/** JSON Lines, one per type as docker's, with sizes in bytes; -v adds each type's items. */
function printJson(usage: DiskUsage, verbose: boolean): void {
  process.stdout.write(
    formatJsonLines(
      summaryRows(usage).map(([type, c]) => ({
        Type: type,
        TotalCount: c.totalCount,
        Active: c.activeCount,
        Size: c.totalSize,
        Reclaimable: c.reclaimable,
        ...(verbose && { Items: c.items }),
      })),
    ),
  );
}

export function registerSystem(program: Command): void {
  const system = program.command('system').description('Manage the store as a whole');
  registerFsck(system);

  system
    .command('df')
    .description('Show disk usage: images, containers, local volumes, build cache')
    .option('-v, --verbose', 'show each image, container, volume and cache record')
    .option('--format <format>', 'table or json', 'table')
    .action(async (options: { verbose?: boolean; format: string }, command: Command) => {
      const format = parseFormat(options.format);
      await withStore(command, async (store) => {
        const usage = await diskUsage(store);
        if (format === 'json') printJson(usage, options.verbose ?? false);
        else if (options.verbose) printVerbose(usage);
        else printSummary(usage);
      });
    });

  system
    .command('prune')
    .description('Remove containers not mounted, dangling images (-a: all unused), unused build cache (-a: all), and with --volumes unused anonymous volumes')
    .option('-a, --all', 'remove all images no container was made from, not only dangling ones')
    .option('--volumes', 'prune anonymous volumes too')
    .option('--filter <filter>', 'until=<timestamp|duration>, label=key[=value], label!=key[=value] (repeatable)', collect, [])
    .option('-f, --force', 'do not prompt for confirmation')
    .action(async (options: { all?: boolean; volumes?: boolean; filter: string[]; force?: boolean }, command: Command) => {
      const filters = pruneFilters(options.filter, ['until', 'label', 'label!']);
      if (options.volumes && filters.until) throw new UsageError('the "until" filter is not supported with --volumes');
      const warning = [
        'WARNING! This will remove:',
        '  - all containers that are not mounted',
        ...(options.volumes ? ['  - anonymous volumes not used by at least one container'] : []),
        options.all ? '  - all images without at least one container associated to them' : '  - all dangling images',
        options.all ? '  - all build cache' : '  - unused build cache',
      ].join('\n');
      if (!(await confirmPrune(warning, options.force))) return;
      await withStore(command, async (store) => {
        const result = await pruneSystem(store, { ...(options.all && { all: true }), ...(options.volumes && { volumes: true }), filters });
        printDeleted(process.stdout, 'Deleted Containers', result.containers.deleted);
        if (result.volumes) printDeleted(process.stdout, 'Deleted Volumes', result.volumes.deleted);
        printDeleted(process.stdout, 'Deleted Images', imagePruneLines(result.images));
        printDeleted(process.stdout, 'Deleted build cache objects', result.buildCache.deleted);
        printReclaimed(process.stdout, result.spaceReclaimed);
      });
    });
}
