import type { Command } from 'commander';

import { collectHostInfo, type HostInfo } from '../../system/info.js';
import { globalOptions } from '../context.js';
import { parseFormat } from '../output.js';

function renderInfo(info: HostInfo): string {
  const lines = [
    `Kernel Version: ${info.kernelVersion}`,
    `Store Root: ${info.root}`,
    `Filesystems: ${info.filesystems.join(', ')}`,
    'Storage Drivers:',
    ...info.drivers.map((d) => ` ${d.name.padEnd(14)}${d.available ? 'yes' : 'no '}   ${d.reason}`),
  ];
  return `${lines.join('\n')}\n`;
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('Show the storage features of this kernel and which drivers can run here')
    .option('--format <format>', 'table or json', 'table')
    .action((options: { format: string }, command: Command) => {
      const format = parseFormat(options.format);
      const info = collectHostInfo(globalOptions(command).root);
      process.stdout.write(format === 'json' ? `${JSON.stringify(info, null, 2)}\n` : renderInfo(info));
    });
}
