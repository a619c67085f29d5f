import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { parseDigest, shortId } from '../../store/digest.js';
import type { Layer } from '../../store/layers.js';
import { openArchiveInput } from '../archive-input.js';
import { progressLine, withStore } from '../context.js';
import { formatSize, parseFormat, printList, timeAgo, UsageError, type Column } from '../output.js';

interface ListOptions {
  format: string;
  quiet?: boolean;
  trunc: boolean;
}

function layerColumns(trunc: boolean): Column<Layer>[] {
  const id = (digest: string | null) => (digest === null ? '<none>' : trunc ? shortId(digest) : digest);
  return [
    { header: 'CHAIN ID', value: (l) => id(l.chainId) },
    { header: 'DIFF ID', value: (l) => id(l.diffId) },
    { header: 'PARENT', value: (l) => id(l.parent) },
    { header: 'SIZE', value: (l) => formatSize(l.size) },
    { header: 'REFS', value: (l) => String(l.refs) },
    { header: 'CREATED', value: (l) => timeAgo(l.created) },
  ];
}

function openOutput(file: string | undefined): Writable {
  if (file) return createWriteStream(file);
  if (process.stdout.isTTY) throw new UsageError('refusing to write a layer archive to a terminal: use -o FILE or redirect stdout');
  return process.stdout;
}

export function registerLayer(program: Command): void {
  const layer = program.command('layer').description('Manage read-only image layers');

  layer
    .command('import')
    .description('Import a layer tar (plain, gzip or zstd) and print its ChainID')
    .argument('<file>', 'the layer archive, or - for standard input')
    .option('--parent <chain-id>', 'the layer to import on top of')
    .option('--digest <diff-id>', 'the DiffID the archive must have (sha256:...)')
    .action(async (file: string, options: { parent?: string; digest?: string }, command: Command) => {
      const expectedDiffId = options.digest ? parseDigest(options.digest, '--digest') : undefined;
      await withStore(command, async (store) => {
        const parent = options.parent ? store.layers.resolve(options.parent).chainId : null;
        const archive = await openArchiveInput(file, 'a layer archive');
        const progress = progressLine('Importing');
        const result = await store.layers
          .import(archive.input, {
            parent,
            explicit: true,
            ...(expectedDiffId && { expectedDiffId }),
            onProgress: (bytes) => progress.update(formatSize(bytes)),
          })
          .finally(async () => {
            progress.done();
            await archive.close();
          });
        if (result.existed) process.stderr.write(`Layer ${shortId(result.layer.chainId)} already exists\n`);
        process.stdout.write(`${result.layer.chainId}\n`);
      });
    });

  layer
    .command('ls')
    .description('List layers')
    .option('--format <format>', 'table or json', 'table')
    .option('-q, --quiet', 'only print ChainIDs')
    .option('--no-trunc', "don't truncate ids")
    .action(async (options: ListOptions, command: Command) => {
      const format = parseFormat(options.format);
      await withStore(command, (store) => {
        printList(process.stdout, store.layers.list(), {
          format,
          ...(options.quiet && { quiet: true }),
          columns: layerColumns(options.trunc),
          id: (l) => (options.trunc ? shortId(l.chainId) : l.chainId),
          json: (l) => l,
        });
      });
    });

  layer
    .command('inspect')
    .description('Show layers in detail (a JSON array)')
    .argument('<id...>', 'ChainIDs or unique prefixes')
    .action(async (ids: string[], _options: unknown, command: Command) => {
      await withStore(command, (store) => {
        const layers = ids.map((id) => store.layers.resolve(id));
        process.stdout.write(`${JSON.stringify(layers, null, 2)}\n`);
      });
    });

  layer
    .command('export')
    .description('Write a layer as the exact tar it was imported from')
    .argument('<id>', 'ChainID or unique prefix')
    .option('-o, --output <file>', 'write to a file instead of standard output')
    .action(async (id: string, options: { output?: string }, command: Command) => {
      await withStore(command, async (store) => {
        const chainId = store.layers.resolve(id).chainId;
        await pipeline(store.layers.export(chainId), openOutput(options.output));
      });
    });

  layer
    .command('rm')
    .description('Remove layers that nothing else uses')
    .argument('<id...>', 'ChainIDs or unique prefixes')
    .action(async (ids: string[], _options: unknown, command: Command) => {
      await withStore(command, async (store) => {
        for (const id of ids) {
          for (const removed of await store.layers.remove(store.layers.resolve(id).chainId)) {
            process.stdout.write(`Deleted: ${removed.chainId}\n`);
          }
        }
      });
    });
}
