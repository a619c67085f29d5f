// Output as docker prints it: borderless tables with upper-case headers and
// three spaces between columns, JSON Lines for lists, a JSON array for inspect.
import type { Writable } from 'node:stream';

export type Format = 'table' | 'json';

export interface Column<T> {
  header: string;
  value: (row: T) => string;
}

export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = [columns.map((c) => c.header), ...rows.map((row) => columns.map((c) => c.value(row)))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? '').length)));
  return cells
    .map((line) =>
      line
        .map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3)))
        .join('')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

export function formatJsonLines(rows: readonly unknown[]): string {
  return rows.map((row) => `${JSON.stringify(row)}\n`).join('');
}

/** Sizes as docker prints them: decimal units, three significant digits ("1.23MB"). */
export function formatSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes;
  let unit = 0;
  // 999.5 and up would print as "1.00e+3" of this unit: it is 1 of the next.
  while (value >= 999.5 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  // Trailing zeros go only after a decimal point: 100kB stays 100kB.
  const text = unit === 0 ? String(value) : value.toPrecision(3).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
  return `${text}${units[unit]}`;
}

/** Writes a list in the chosen format; `-q` prints only the ids. */
export function printList<T>(
  out: Writable,
  rows: readonly T[],
  options: { format: Format; quiet?: boolean; columns: readonly Column<T>[]; id: (row: T) => string; json: (row: T) => unknown },
): void {
  if (options.quiet) out.write(rows.map((row) => `${options.id(row)}\n`).join(''));
  else if (options.format === 'json') out.write(formatJsonLines(rows.map(options.json)));
  else out.write(formatTable(rows, options.columns));
}

export function parseFormat(value: string): Format {
  if (value !== 'table' && value !== 'json') {
    throw new UsageError(`invalid --format "${value}": use "table" or "json"`);
  }
  return value;
}

/** A mistake in how the command was called (exit status 2). */
export class UsageError extends Error {}

/** A size as docker's units.RAMInBytes reads it: "512m", "10G", "1.5g", "4096" (binary units). */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`invalid size "${text}": use a number with an optional unit (k, m, g, t, p)`);
  const power = ' kmgtp'.indexOf((match[2] || ' ').toLowerCase());
  return Math.round(Number(match[1]) * 1024 ** power);
}

/** "3 days ago", with the thresholds docker's tables use (go-units HumanDuration). */
export function timeAgo(iso: string, now = Date.now()): string {
  const seconds = Math.floor((now - Date.parse(iso)) / 1000);
  if (Number.isNaN(seconds)) return 'N/A';
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  let text: string;
  if (seconds < 1) text = 'Less than a second';
  else if (seconds === 1) text = '1 second';
  else if (seconds < 60) text = `${seconds} seconds`;
  else if (minutes === 1) text = 'About a minute';
  else if (minutes < 60) text = `${minutes} minutes`;
  else if (hours === 1) text = 'About an hour';
  else if (hours < 48) text = `${hours} hours`;
  else if (hours < 24 * 7 * 2) text = `${Math.floor(hours / 24)} days`;
  else if (hours < 24 * 30 * 2) text = `${Math.floor(hours / 24 / 7)} weeks`;
  else if (hours < 24 * 365 * 2) text = `${Math.floor(hours / 24 / 30)} months`;
  else text = `${Math.floor(hours / 24 / 365)} years`;
  return `${text} ago`;
}
