// What every prune command shares: docker's --filter syntax, the
// confirmation prompt (refused, not hung, without a terminal), and the
// "Deleted ...: / Total reclaimed space:" report.
import { createInterface } from 'node:readline/promises';
import type { Writable } from 'node:stream';

import type { PruneFilters } from '../store/prune.js';
import { formatSize, UsageError } from './output.js';

export const collect = (value: string, previous: string[]) => [...previous, value];

// "\u00b5s" is Go's "µs", written escaped: the CLI bundle is kept to ASCII (scripts/bundle-cli.mjs).
const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, '\u00b5s': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|\u00b5s|ms|s|m|h))+$/;

/**
 * docker's `until`: a Go duration before now ("10m", "1h30m"), Unix seconds
 * ("1700000000.5"), or a date/time ("2024-01-02", "2024-01-02T15:04:05Z").
 */
export function parseUntil(value: string, now = Date.now()): Date {
  if (DURATION.test(value)) {
    let ms = 0;
    for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)/g)) ms += Number(amount) * DURATION_UNITS[unit!]!;
    return new Date(now - ms);
  }
  if (/^\d+(?:\.\d+)?$/.test(value)) return new Date(Number(value) * 1000);
  const time = Date.parse(value);
  if (Number.isNaN(time)) throw new UsageError(`invalid until filter "${value}": use a duration (10m, 24h), Unix seconds or a date/time (2024-01-02T15:04:05Z)`);
  return new Date(time);
}

/** --filter values (until=, label=, label!=) into filters; `keys` are those the command takes. */
export function pruneFilters(values: readonly string[], keys: ReadonlyArray<'until' | 'label' | 'label!'>): PruneFilters {
  const filters: PruneFilters = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad format of filter (expected name=value): ${value}`);
    const key = value.slice(0, eq) as 'until' | 'label' | 'label!';
    const arg = value.slice(eq + 1);
    if (!keys.includes(key)) throw new UsageError(`invalid filter '${key}': this prune takes ${keys.join(', ')}`);
    if (key === 'until') filters.until = parseUntil(arg);
    else if (key === 'label') (filters.label ??= []).push(arg);
    else (filters.labelNot ??= []).push(arg);
  }
  return filters;
}

/**
 * Asks as docker does unless forced. Without a terminal to ask on, refuses
 * (a script would otherwise hang on the prompt). Returns whether to go on.
 */
export async function confirmPrune(warning: string, force: boolean | undefined): Promise<boolean> {
  if (force) return true;
  if (!process.stdin.isTTY) {
    throw new UsageError('refusing to prune without confirmation: standard input is not a terminal; use -f/--force');
  }
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await prompt.question(`${warning}\nAre you sure you want to continue? [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    prompt.close();
  }
}

/** "Deleted Containers:" and the like, one line each, then a blank line; nothing when nothing went. */
export function printDeleted(out: Writable, title: string, lines: readonly string[]): void {
  if (lines.length > 0) out.write(`${title}:\n${lines.map((line) => `${line}\n`).join('')}\n`);
}

export function printReclaimed(out: Writable, bytes: number): void {
  out.write(`Total reclaimed space: ${formatSize(bytes)}\n`);
}
