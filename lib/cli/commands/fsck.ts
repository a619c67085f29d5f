// strata system fsck: checks the store against its data and the kernel, and
// with --repair fixes what it can. Exits 1 while problems remain.
import type { Command } from 'commander';

import { checkStore, type Finding } from '../../store/fsck.js';
import { withStore } from '../context.js';
import { parseFormat, printList } from '../output.js';

export function registerFsck(system: Command): void {
  system
    .command('fsck')
    .description('Check the store: orphan data, metadata without data, reference counts, stale mounts, leaked loop and device-mapper devices')
    .option('--repair', 'repair what can be repaired (never deleting data that metadata references)')
    .option('--format <format>', 'table or json', 'table')
    .action(async (options: { repair?: boolean; format: string }, command: Command) => {
      const format = parseFormat(options.format);
      const { findings, checked } = await withStore(command, async (store) => ({
        findings: await checkStore(store, { repair: options.repair ?? false }),
        checked:
          `${store.layers.list().length} layer(s), ${store.containers.list().length} container(s), ${store.volumes.list().length} volume(s), ` +
          `their data, and the mounts and devices under ${store.root}`,
      }));
      // An empty table would be only its header.
      if (findings.length === 0 && format === 'table') {
        process.stdout.write(`No problems found: checked ${checked}\n`);
        return;
      }
      printList(process.stdout, findings, {
        format,
        columns: [
          { header: 'KIND', value: (f: Finding) => f.kind },
          { header: 'OBJECT', value: (f: Finding) => f.object },
          { header: 'REPAIRED', value: (f: Finding) => (f.repaired ? 'yes' : 'no') },
          { header: 'DETAIL', value: (f: Finding) => f.detail },
        ],
        id: (f) => f.object,
        json: (f) => f,
      });
      const remaining = findings.filter((f) => !f.repaired).length;
      if (remaining > 0) {
        throw new Error(`${remaining} problem(s) found${options.repair ? ' that could not be repaired' : ': run strata system fsck --repair'}`);
      }
    });
}
