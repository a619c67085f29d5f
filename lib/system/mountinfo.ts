// The calling process's mount table (/proc/self/mountinfo).
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

import { isMountRoot } from '../native/mount.js';

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => unescape(line.split(' ')[4] ?? ''));
}

/** One statx where the kernel tells; the mount table, which grows with every container mounted, elsewhere. */
export function isMountPoint(path: string): boolean {
  return isMountRoot(path) ?? mountPoints().includes(path);
}

/** Mount points at or below `dir`. */
export function mountsBelow(dir: string): string[] {
  return mountPoints().filter((point) => point === dir || point.startsWith(`${dir}/`));
}

/** Processes whose cwd, root or open files lie at or below `dir`: what keeps a mount busy. */
export function processesUsing(dir: string): Array<{ pid: number; command: string }> {
  const users: Array<{ pid: number; command: string }> = [];
  const inside = (target: string) => target === dir || target.startsWith(`${dir}/`);
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const links = ['cwd', 'root', ...readdirSync(`/proc/${entry}/fd`).map((fd) => `fd/${fd}`)];
      if (links.some((link) => inside(readlinkSync(`/proc/${entry}/${link}`)))) {
        users.push({ pid: Number(entry), command: readFileSync(`/proc/${entry}/comm`, 'utf8').trim() });
      }
    } catch {
      // the process ended, or its links are not readable
    }
  }
  return users;
}
