// strata system: commands about the store as a whole.
import type { Command } from 'commander';

import { registerFsck } from './fsck.js';

export function registerSystem(program: Command): void {
  const system = program.command('system').description('Manage the store as a whole');
  registerFsck(system);
}
