// What `npm run bench` writes besides the JSON: Markdown tables of ratios and
// an SVG chart of the copy-up strategies (hand-written, no dependencies).
// Pure functions of the results, so test/bench can check them.
import type { Row, Stats } from './support.js';

export interface Machine {
  date: string;
  kernel: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  commit: string;
  docker?: string;
}

export interface Results {
  /** Every case in the registry ran and none failed: a table to publish. */
  complete: boolean;
  cases: string[];
  runs?: number;
  machine: Machine;
  rows: Row[];
}

/** Three significant digits, without exponent notation. */
function figure(value: number): string {
  if (value === 0) return '0';
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(value))));
  return value.toFixed(Math.min(digits, 4));
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Math.abs(bytes);
  let unit = 0;
  for (; value >= 1024 && unit < units.length - 1; unit++) value /= 1024;
  return `${bytes < 0 ? '-' : ''}${unit === 0 ? value : figure(value)} ${units[unit]}`;
}

const median = (s: Stats, unit: string) => (unit === 'bytes' ? formatBytes(s.median) : `${figure(s.median)} ${unit}`);
const range = (s: Stats, unit = '') => (unit === 'bytes' ? `${formatBytes(s.min)}–${formatBytes(s.max)}` : `${figure(s.min)}–${figure(s.max)}`);
const ratio = (r: Row) => (r.ratio === undefined ? '' : `${figure(r.ratio)}×`);

/** Rows in the order they came, grouped by a key. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const name = key(item);
    groups.set(name, [...(groups.get(name) ?? []), item]);
  }
  return groups;
}

export function renderMarkdown(results: Results): string {
  const m = results.machine;
  const lines = [
    '# stratafs benchmark results',
    '',
    `Measured ${m.date} on Linux ${m.kernel}, ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB RAM, Node ${m.node}` +
      `${m.docker ? `, Docker ${m.docker}` : ''}, commit \`${m.commit}\`.`,
    results.complete
      ? `Every case ran${results.runs ? ` with --runs ${results.runs}` : ''}.`
      : `**Partial run**: only ${results.cases.join(', ')}; not a complete table.`,
    '',
    'Each figure is the median of the runs, with min–max. The ratio is subject ÷ baseline, both measured in the same run on the same ' +
      'filesystem: 2× takes twice as long (or as much) as the baseline, 0.5× half. See bench/README.md for how to read and rerun these.',
  ];
  for (const [caseName, caseRows] of groupBy(results.rows, (r) => r.case)) {
    lines.push('', `## ${caseName}`);
    for (const [section, rows] of groupBy(caseRows, (r) => r.section)) {
      const disk = rows.some((r) => r.bytesUsed !== undefined);
      lines.push('', `### ${section}`, '');
      lines.push(`| fs | subject | median | min–max | baseline | baseline median | ratio |${disk ? ' disk used |' : ''}`);
      lines.push(`| --- | --- | ---: | ---: | --- | ---: | ---: |${disk ? ' ---: |' : ''}`);
      for (const r of rows) {
        const cells = [
          r.fs,
          r.subject + (r.note ? ` (${r.note})` : ''),
          median(r.value, r.unit),
          range(r.value, r.unit),
          r.baseline ?? '',
          r.base ? median(r.base, r.unit) : '',
          ratio(r),
          ...(disk ? [r.bytesUsed === undefined ? '' : formatBytes(r.bytesUsed)] : []),
        ];
        lines.push(`| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

const palette = ['#4e79a7', '#a0cbe8', '#f28e2b', '#ffbe7d', '#59a14f', '#8cd17d', '#b6992d', '#e15759', '#76b7b2', '#b07aa1'];

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * One panel per section (operation), a group of bars per filesystem, a bar
 * per driver configuration (its colour in the legend), on a log scale of
 * milliseconds: copy-up costs span five orders of magnitude.
 */
export function renderSvg(rows: readonly Row[], title: string): string {
  const timed = rows.filter((r) => r.unit === 'ms' && r.value.min > 0);
  const subjects = [...new Set(timed.map((r) => r.subject))];
  const sections = [...groupBy(timed, (r) => r.section)];
  const width = 960;
  const left = 70;
  const right = 20;
  const panelHeight = 200;
  const panelGap = 70;
  const top = 50;
  const legendRows = Math.ceil(subjects.length / 3);
  const height = top + sections.length * (panelHeight + panelGap) + legendRows * 20 + 10;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${escape(title)}</text>`,
  ];
  const values = timed.flatMap((r) => [r.value.min, r.value.max]).filter((v) => v > 0);
  const lowExp = Math.floor(Math.log10(Math.min(...values, 1)));
  const highExp = Math.ceil(Math.log10(Math.max(...values, 10)));
  const y = (value: number, panelTop: number) =>
    panelTop + panelHeight - ((Math.log10(value) - lowExp) / (highExp - lowExp)) * panelHeight;
  sections.forEach(([section, sectionRows], index) => {
    const panelTop = top + index * (panelHeight + panelGap);
    out.push(`<text x="${left}" y="${panelTop - 8}" font-size="13">${escape(section)} (ms, log scale)</text>`);
    for (let exp = lowExp; exp <= highExp; exp++) {
      const gy = y(10 ** exp, panelTop).toFixed(1);
      out.push(`<line x1="${left}" x2="${width - right}" y1="${gy}" y2="${gy}" stroke="#ddd"/>`);
      out.push(`<text x="${left - 6}" y="${gy}" text-anchor="end" dominant-baseline="middle">${figure(10 ** exp)}</text>`);
    }
    const groups = [...groupBy(sectionRows, (r) => r.fs)];
    const groupWidth = (width - left - right) / groups.length;
    groups.forEach(([fs, groupRows], g) => {
      const x0 = left + g * groupWidth;
      const barWidth = (groupWidth - 20) / Math.max(groupRows.length, 1);
      groupRows.forEach((r, b) => {
        const x = x0 + 10 + b * barWidth;
        const barTop = y(r.value.median, panelTop);
        const colour = palette[subjects.indexOf(r.subject) % palette.length];
        out.push(
          `<rect x="${x.toFixed(1)}" y="${barTop.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(panelTop + panelHeight - barTop).toFixed(1)}" fill="${colour}">` +
            `<title>${escape(`${fs}, ${r.subject}: ${figure(r.value.median)} ms (${range(r.value)})`)}</title></rect>`,
        );
        // min–max whisker
        const cx = (x + (barWidth - 2) / 2).toFixed(1);
        out.push(`<line x1="${cx}" x2="${cx}" y1="${y(r.value.max, panelTop).toFixed(1)}" y2="${y(r.value.min, panelTop).toFixed(1)}" stroke="#333"/>`);
      });
      out.push(`<text x="${(x0 + groupWidth / 2).toFixed(1)}" y="${panelTop + panelHeight + 16}" text-anchor="middle">${escape(fs)}</text>`);
    });
    out.push(`<line x1="${left}" x2="${width - right}" y1="${panelTop + panelHeight}" y2="${panelTop + panelHeight}" stroke="#333"/>`);
  });
  const legendTop = top + sections.length * (panelHeight + panelGap) - panelGap / 2;
  subjects.forEach((subject, i) => {
    const x = left + (i % 3) * 290;
    const ly = legendTop + Math.floor(i / 3) * 20;
    out.push(`<rect x="${x}" y="${ly}" width="12" height="12" fill="${palette[i % palette.length]}"/>`);
    out.push(`<text x="${x + 18}" y="${ly + 10}">${escape(subject)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
