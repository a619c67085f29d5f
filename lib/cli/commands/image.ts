import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { auditImage, describeLayer } from '../../images/audit.js';
import { importRootfs } from '../../images/import.js';
import { loadImages } from '../../images/load.js';
import { normalizeTag } from '../../images/reference.js';
import { rootfsArchive } from '../../images/rootfs.js';
import { saveImages, type SaveFormat } from '../../images/save.js';
import { shortId } from '../../store/digest.js';
import type { Image } from '../../store/images.js';
import { pruneImages, type ImagePruneResult } from '../../store/prune.js';
import type { Store } from '../../store/store.js';
import { openArchiveInput } from '../archive-input.js';
import { progressLine, withStore } from '../context.js';
import { formatSize, formatTable, parseFormat, printList, timeAgo, UsageError, type Column } from '../output.js';
import { collect, confirmPrune, printDeleted, printReclaimed, pruneFilters } from '../prune.js';

/** docker's "untagged: ..." and "deleted: ..." lines of an image prune. */
export function imagePruneLines(result: ImagePruneResult): string[] {
  return result.deleted.map((entry) => ('untagged' in entry ? `untagged: ${entry.untagged}` : `deleted: ${entry.deleted}`));
}

/** What `image inspect` shows, in docker's shape. */
function describe(store: Store, image: Image) {
  const layers = store.images.layersOf(image);
  const dirs = image.topLayer ? store.layers.chainDirs(image.topLayer) : [];
  const config = image.config;
  return {
    Id: image.id,
    RepoTags: image.tags,
    RepoDigests: image.digests,
    Parent: '',
    Comment: typeof config.comment === 'string' ? config.comment : '',
    Created: config.created ?? image.created,
    Author: config.author ?? '',
    Config: config.config ?? null,
    Architecture: config.architecture ?? '',
    ...(config.variant && { Variant: config.variant }),
    Os: config.os ?? '',
    Size: layers.reduce((sum, layer) => sum + layer.size, 0),
    GraphDriver: {
      Name: store.driver.name,
      Data: dirs.length === 0 ? null : { ...(dirs.length > 1 && { LowerDir: dirs.slice(1).join(':') }), UpperDir: dirs[0] },
    },
    RootFS: { Type: 'layers', Layers: config.rootfs.diff_ids },
    Metadata: { LastTagTime: image.added },
  };
}

function openOutput(file: string | undefined): Writable {
  if (file) return createWriteStream(file);
  if (process.stdout.isTTY) throw new UsageError('refusing to write an image archive to a terminal: use -o FILE or redirect stdout');
  return process.stdout;
}

function imageRows(all: Image[]): Array<{ image: Image; repository: string; tag: string }> {
  return all.flatMap((image) =>
    image.tags.length === 0
      ? [{ image, repository: '<none>', tag: '<none>' }]
      : image.tags.map((tag) => ({ image, repository: tag.slice(0, tag.lastIndexOf(':')), tag: tag.slice(tag.lastIndexOf(':') + 1) })),
  );
}

/** `image ls`, also docker's top-level `images`. */
function addList(command: Command): void {
  command
    .description('List images')
    .option('--format <format>', 'table or json', 'table')
    .option('-q, --quiet', 'only print image ids')
    .option('--no-trunc', "don't truncate ids")
    .option('-f, --filter <filter>', 'dangling=true|false')
    .action(async (options: { format: string; quiet?: boolean; trunc: boolean; filter?: string }, command: Command) => {
      const format = parseFormat(options.format);
      let dangling: boolean | undefined;
      if (options.filter !== undefined) {
        const match = /^dangling=(true|false)$/.exec(options.filter);
        if (!match) throw new UsageError(`invalid filter "${options.filter}": only dangling=true|false is supported`);
        dangling = match[1] === 'true';
      }
      await withStore(command, (store) => {
        const id = (digest: string) => (options.trunc ? shortId(digest) : digest);
        const rows = imageRows(store.images.list(dangling === undefined ? {} : { dangling }));
        const chainSizes = store.layers.chainSizes();
        const sizeOf = (image: Image) => (image.topLayer ? (chainSizes.get(image.topLayer) ?? 0) : 0);
        const columns: Column<(typeof rows)[number]>[] = [
          { header: 'REPOSITORY', value: (r) => r.repository },
          { header: 'TAG', value: (r) => r.tag },
          { header: 'IMAGE ID', value: (r) => id(r.image.id) },
          { header: 'CREATED', value: (r) => timeAgo(r.image.created) },
          { header: 'SIZE', value: (r) => formatSize(sizeOf(r.image)) },
        ];
        const quietRows = options.quiet ? [...new Map(rows.map((r) => [r.image.id, r])).values()] : rows;
        printList(process.stdout, quietRows, {
          format,
          ...(options.quiet && { quiet: true }),
          columns,
          id: (r) => id(r.image.id),
          json: (r) => ({
            Repository: r.repository,
            Tag: r.tag,
            ID: r.image.id,
            CreatedAt: r.image.created,
            Size: sizeOf(r.image),
          }),
        });
      });
    });
}

function registerImageCommands(group: Command): void {
  addList(group.command('ls').alias('list'));

  group
    .command('inspect')
    .description('Show images in detail (a JSON array)')
    .argument('<image...>', 'tags, ids or unique id prefixes')
    .action(async (refs: string[], _options: unknown, command: Command) => {
      await withStore(command, (store) => {
        const shown = refs.map((ref) => describe(store, store.images.resolve(ref)));
        process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      });
    });

  group
    .command('history')
    .description("Show an image's history: each layer, what created it, its size")
    .argument('<image>', 'tag, id or unique id prefix')
    .option('--no-trunc', "don't truncate output")
    .option('-q, --quiet', 'only show image ids')
    .option('--format <format>', 'table or json', 'table')
    .action(async (ref: string, options: { trunc: boolean; quiet?: boolean; format: string }, command: Command) => {
      const format = parseFormat(options.format);
      await withStore(command, (store) => {
        const image = store.images.resolve(ref);
        const layers = store.images.layersOf(image);
        const history = image.config.history ?? [];
        // Each non-empty history entry made the next layer; layers without an entry still show.
        let next = 0;
        const rows = history.map((entry) => ({ entry, size: entry.empty_layer ? 0 : (layers[next++]?.size ?? 0) }));
        while (next < layers.length) rows.push({ entry: {}, size: layers[next++]!.size });
        rows.reverse();
        const idOf = (i: number) => (i === 0 ? (options.trunc ? shortId(image.id) : image.id) : '<missing>');
        const createdBy = (text: string) => {
          const clean = text.replace(/[\t\n]/g, ' ');
          return options.trunc && clean.length > 45 ? `${clean.slice(0, 44)}…` : clean;
        };
        const indexed = rows.map((row, i) => ({ ...row, i }));
        printList(process.stdout, indexed, {
          format,
          ...(options.quiet && { quiet: true }),
          columns: [
            { header: 'IMAGE', value: (r) => idOf(r.i) },
            { header: 'CREATED', value: (r) => (r.entry.created ? timeAgo(r.entry.created) : 'N/A') },
            { header: 'CREATED BY', value: (r) => createdBy(r.entry.created_by ?? '') },
            { header: 'SIZE', value: (r) => formatSize(r.size) },
            { header: 'COMMENT', value: (r) => r.entry.comment ?? '' },
          ],
          id: (r) => idOf(r.i),
          json: (r) => ({
            ID: idOf(r.i),
            CreatedAt: r.entry.created ?? null,
            CreatedBy: r.entry.created_by ?? '',
            Size: r.size,
            Comment: r.entry.comment ?? '',
          }),
        });
      });
    });

  group
    .command('audit')
    .description('List files a later layer deleted but the image still ships, and likely secrets in any layer')
    .argument('<image>', 'tag, id or unique id prefix')
    .option('--format <format>', 'table or json', 'table')
    .action(async (ref: string, options: { format: string }, command: Command) => {
      const format = parseFormat(options.format);
      await withStore(command, async (store) => {
        const report = await auditImage(store, store.images.resolve(ref));
        if (format === 'json') {
          process.stdout.write(`${JSON.stringify(report)}\n`);
          return;
        }
        process.stdout.write(`Deleted in a later layer, still shipped: ${report.deleted.length} file(s), ${formatSize(report.deletedBytes)}\n`);
        if (report.deleted.length > 0) {
          process.stdout.write(
            formatTable(report.deleted, [
              { header: 'PATH', value: (d) => d.path },
              { header: 'SIZE', value: (d) => formatSize(d.size) },
              { header: 'ADDED IN LAYER', value: (d) => describeLayer(d.addedIn) },
              { header: 'DELETED IN LAYER', value: (d) => describeLayer(d.deletedIn) },
            ]),
          );
        }
        process.stdout.write(`\nLikely secrets: ${report.secrets.length}\n`);
        if (report.secrets.length > 0) {
          process.stdout.write(
            formatTable(report.secrets, [
              { header: 'PATH', value: (s) => s.path },
              { header: 'WHAT', value: (s) => s.kind },
              { header: 'LAYER', value: (s) => describeLayer(s.layer) },
              { header: 'HIDDEN BY A LATER LAYER', value: (s) => (s.deleted ? 'yes (still in the image)' : 'no') },
            ]),
          );
        }
      });
    });

  group
    .command('tag')
    .description('Give an image another name')
    .argument('<source>', 'tag, id or unique id prefix')
    .argument('<target>', 'name[:tag]')
    .action(async (source: string, target: string, _options: unknown, command: Command) => {
      await withStore(command, (store) => {
        store.images.tag(source, target);
      });
    });

  group
    .command('rm')
    .description('Untag images, and remove those left without a tag that nothing uses')
    .argument('<image...>', 'tags, ids or unique id prefixes')
    .option('-f, --force', 'remove an image with several tags or used by containers')
    .action(async (refs: string[], options: { force?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        for (const ref of refs) {
          const result = await store.images.remove(ref, { ...(options.force && { force: true }) });
          for (const tag of result.untagged) process.stdout.write(`Untagged: ${tag}\n`);
          for (const id of result.deleted) process.stdout.write(`Deleted: ${id}\n`);
          for (const layer of result.doomedLayers) process.stdout.write(`Deleted: ${layer.chainId}\n`);
        }
      });
    });

  group
    .command('prune')
    .description('Remove dangling images no container was made from (with -a, all such images)')
    .option('-a, --all', 'remove all images no container was made from, not only dangling ones')
    .option('--filter <filter>', 'until=<timestamp|duration>, label=key[=value], label!=key[=value] (repeatable)', collect, [])
    .option('-f, --force', 'do not prompt for confirmation')
    .action(async (options: { all?: boolean; filter: string[]; force?: boolean }, command: Command) => {
      const filters = pruneFilters(options.filter, ['until', 'label', 'label!']);
      const warning = options.all
        ? 'WARNING! This will remove all images without at least one container associated to them.'
        : 'WARNING! This will remove all dangling images.';
      if (!(await confirmPrune(warning, options.force))) return;
      await withStore(command, async (store) => {
        const result = await pruneImages(store, { ...(options.all && { all: true }), filters });
        printDeleted(process.stdout, 'Deleted Images', imagePruneLines(result));
        printReclaimed(process.stdout, result.spaceReclaimed);
      });
    });

}

export function registerImage(program: Command): void {
  registerImageCommands(program.command('image').description('Manage images'));
  addList(program.command('images'));

  program
    .command('load')
    .description('Load images from a docker save archive or an OCI image layout (tar)')
    .option('-i, --input <file>', 'the archive, or - for standard input', '-')
    .option('-q, --quiet', 'no progress output')
    .action(async (options: { input: string; quiet?: boolean }, command: Command) => {
      if (options.input === '-' && process.stdin.isTTY) {
        throw new UsageError('refusing to read an image archive from a terminal: use -i FILE or pipe one in');
      }
      await withStore(command, async (store) => {
        const tty = process.stderr.isTTY && !options.quiet;
        let progress: ReturnType<typeof progressLine> | undefined;
        const loaded = await loadImages(store, options.input === '-' ? process.stdin : options.input, {
          layer(diffId, size, existed) {
            progress?.done();
            const what = `Loading layer ${shortId(diffId)}`;
            if (existed) {
              if (!options.quiet) process.stderr.write(`${what}: already exists\n`);
              progress = undefined;
            } else if (tty) {
              progress = progressLine(what);
            } else if (!options.quiet) {
              process.stderr.write(`${what} (${formatSize(size)})\n`);
            }
          },
          progress(_diffId, bytes, size) {
            progress?.update(`${formatSize(bytes)}/${formatSize(size)}`);
          },
        }).finally(() => progress?.done());
        for (const { image, tags } of loaded) {
          if (tags.length === 0) process.stdout.write(`Loaded image ID: ${image.id}\n`);
          for (const tag of tags) process.stdout.write(`Loaded image: ${tag}\n`);
        }
      });
    });

  program
    .command('save')
    .description('Save images to a tar archive (docker save format, or an OCI image layout)')
    .argument('<image...>', 'tags, ids or unique id prefixes')
    .option('-o, --output <file>', 'write to a file instead of standard output')
    .option('--format <format>', 'docker or oci', 'docker')
    .action(async (refs: string[], options: { output?: string; format: string }, command: Command) => {
      if (options.format !== 'docker' && options.format !== 'oci') throw new UsageError(`invalid --format "${options.format}": use "docker" or "oci"`);
      const format: SaveFormat = options.format;
      await withStore(command, async (store) => {
        for (const ref of refs) store.images.resolve(ref); // a wrong name fails before the file is created
        if (!options.output) return saveImages(store, refs, openOutput(undefined), format);
        // Written beside the target and renamed on success: a failed save leaves no partial archive.
        const partial = `${options.output}.partial-${process.pid}`;
        try {
          await saveImages(store, refs, createWriteStream(partial, { flags: 'wx' }), format);
          await rename(partial, options.output);
        } catch (error) {
          await rm(partial, { force: true });
          throw error;
        }
      });
    });

  program
    .command('import')
    .description('Make a one-layer image of a root filesystem: a tar (plain, gzip or zstd) or a directory')
    .argument('<source>', 'a tar file, a directory, or - for standard input')
    .argument('[reference]', 'name[:tag] for the image')
    .action(async (source: string, reference: string | undefined, _options: unknown, command: Command) => {
      if (source === '-' && process.stdin.isTTY) throw new UsageError('refusing to read a root filesystem tar from a terminal: give a file or pipe one in');
      if (reference !== undefined) normalizeTag(reference); // a bad name fails before any work
      await withStore(command, async (store) => {
        const archive = source !== '-' && (await stat(source)).isDirectory()
          ? { input: rootfsArchive(source), close: async () => {} }
          : await openArchiveInput(source, 'a root filesystem tar');
        const progress = progressLine('Importing');
        const image = await importRootfs(store, archive.input, {
          source,
          ...(reference !== undefined && { tag: reference }),
          onProgress: (bytes) => progress.update(formatSize(bytes)),
        }).finally(async () => {
          progress.done();
          await archive.close();
        });
        process.stdout.write(`${image.id}\n`);
      });
    });

  program
    .command('export')
    .description("Write a container's root filesystem, flattened, as a tar")
    .argument('<container>', 'name, id or unique id prefix')
    .option('-o, --output <file>', 'write to a file instead of standard output')
    .action(async (ref: string, options: { output?: string }, command: Command) => {
      await withStore(command, async (store) => {
        const { id } = store.containers.resolve(ref);
        const output = openOutput(options.output);
        const merged = await store.containers.mount(id);
        try {
          await pipeline(rootfsArchive(merged), output);
        } finally {
          await store.containers.unmount(id);
        }
      });
    });
}
