import type { Command } from 'commander';

import { BuildCache } from '../../build/cache.js';
import { withStore } from '../context.js';
import { formatSize, UsageError } from '../output.js';

/** until=24h, 90m, 30s, or a timestamp: entries last used before then. */
export function parseUntil(filter: string, now = Date.now()): Date {
  const match = /^until=(.+)$/.exec(filter);
  if (!match) throw new UsageError(`invalid filter "${filter}": only until=DURATION|TIMESTAMP is supported`);
  const value = match[1]!;
  const duration = /^(\d+(?:\.\d+)?)(h|m|s)$/.exec(value);
  if (duration) return new Date(now - Number(duration[1]) * { h: 3600_000, m: 60_000, s: 1000 }[duration[2] as 'h' | 'm' | 's']);
  const time = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value);
  if (Number.isNaN(time)) throw new UsageError(`invalid until "${value}": use a duration such as 24h or a timestamp`);
  return new Date(time);
}

export function registerBuilder(program: Command): void {
  const group = program.command('builder').description('Manage the build cache');
  group
    .command('prune')
    .description('Remove build cache: by default the steps no image uses, with -a all of it')
    .option('-a, --all', 'remove all build cache, not only what no image uses')
    .option('-f, --force', 'do not prompt (strata never prompts; accepted for docker compatibility)')
    .option('--filter <filter>', 'until=DURATION|TIMESTAMP')
    .action(async (options: { all?: boolean; filter?: string }, command: Command) => {
      const before = options.filter === undefined ? undefined : parseUntil(options.filter);
      await withStore(command, async (store) => {
        const result = await new BuildCache(store).prune({ ...(options.all && { all: true }), ...(before && { before }) });
        if (result.deleted.length > 0) process.stdout.write(`Deleted build cache objects:\n${result.deleted.map((id) => `${id}\n`).join('')}\n`);
        process.stdout.write(`Total reclaimed space: ${formatSize(result.reclaimed)}\n`);
      });
    });
}
