import type { Command } from 'commander';

import { collectHostInfo, type HostInfo } from '../../system/info.js';
import { globalOptions } from '../context.js';
import { parseFormat } from '../output.js';

const yesNo = (value: boolean) => (value ? 'yes' : 'no');

function renderInfo(info: HostInfo): string {
  const { overlay, backingFilesystem: fs } = info;
  const lines = [
    `Kernel Version: ${info.kernelVersion}`,
    `Store Root: ${info.root}`,
    ` Backing Filesystem: ${fs.type}${fs.probed === info.root ? '' : ` (at ${fs.probed}; the root does not exist yet)`}`,
    ` Supports d_type: ${fs.dType}`,
    ` Reflinks (FICLONE): ${yesNo(fs.reflink)}`,
    ...(info.storageDriver
      ? [
          `Storage Driver: ${info.storageDriver.name}`,
          ...info.storageDriver.status.map(([label, value]) => ` ${label}: ${value}`),
          ` Images: ${info.storageDriver.images}`,
          ` Layers: ${info.storageDriver.layers}`,
          ` Containers: ${info.storageDriver.containers}`,
          ` Volumes: ${info.storageDriver.volumes}`,
        ]
      : ['Storage Driver: none yet (the first command that writes to the root picks one; overlay2 where it can run)']),
    `Overlay: ${overlay.available ? 'available' : 'not available'}`,
    ...(overlay.available
      ? [
          ` lowerdir+ (no page limit on layers): ${yesNo(overlay.lowerdirPlus)}`,
          ` Layers by fd: ${yesNo(overlay.layersByFd)}`,
          ` Max Lower Layers: ${overlay.maxLowers}`,
          ` Options: metacopy ${yesNo(overlay.metacopy)}, index ${yesNo(overlay.index)}, redirect_dir ${yesNo(overlay.redirectDir)}, volatile ${yesNo(overlay.volatile)}, userxattr ${yesNo(overlay.userxattr)}`,
          ` Module Defaults: ${Object.entries(overlay.moduleParams).map(([k, v]) => `${k}=${v}`).join(' ')}`,
        ]
      : []),
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
    .action(async (options: { format: string }, command: Command) => {
      const format = parseFormat(options.format);
      const { root, storageDriver } = globalOptions(command);
      const info = await collectHostInfo(root, storageDriver);
      process.stdout.write(format === 'json' ? `${JSON.stringify(info, null, 2)}\n` : renderInfo(info));
    });
}
