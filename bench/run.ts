// `npm run bench`: runs the cases of bench/cases.ts (all, or --only some),
// after checking that everything they need is here, and writes
// bench/out/results.json, bench/out/RESULTS.md and bench/out/copy-up.svg. A
// complete run (every case, none failed) also refreshes bench/RESULTS.md and
// bench/copy-up.svg, the published table. Run as root in a private mount
// namespace (the npm script does: scripts/in-private-ns tsx bench/run.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';

import { cases } from './cases.js';
import { parseOptions } from './options.js';
import { renderMarkdown, renderSvg, type Machine, type Results } from './report.js';
import type { BenchCase, Row } from './support.js';

const benchDir = import.meta.dirname;
const projectRoot = join(benchDir, '..');
const outDir = join(benchDir, 'out');

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v "${command}"`], { stdio: 'ignore' }).status === 0;
}

/** What the selected cases need and this machine lacks, one line per missing thing. */
function missing(selected: readonly BenchCase[]): string[] {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('root (the cases mount filesystems): run as root');
  const needs = new Map<string, string[]>();
  for (const c of selected) for (const need of c.needs) needs.set(need, [...(needs.get(need) ?? []), c.name]);
  for (const [need, users] of needs) {
    const present = need === 'vm' ? existsSync('/usr/bin/linux.uml') : onPath(need);
    const what = need === 'vm' ? 'the UML guest (/usr/bin/linux.uml, apt: user-mode-linux)' : `${need} on PATH`;
    if (!present) problems.push(`${what}, needed by ${users.join(', ')}`);
  }
  return problems;
}

function machine(): Machine {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: projectRoot, encoding: 'utf8' }).trim();
  const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
  const docker = spawnSync('dockerd', ['--version'], { encoding: 'utf8' }).stdout?.match(/version ([^,\s]+)/)?.[1];
  return {
    date: new Date().toISOString(),
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.versions.node,
    commit: `${git('rev-parse', '--short', 'HEAD')}${dirty ? '-dirty' : ''}`,
    ...(docker && { docker }),
  };
}

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2), cases.map((c) => c.name));
  if (options.list) {
    for (const c of cases) console.log(`${c.name.padEnd(22)} ${c.about}`);
    return;
  }
  const selected = cases.filter((c) => options.selected.includes(c.name));
  const problems = missing(selected);
  if (problems.length > 0) {
    throw new Error(`cannot run ${selected.map((c) => c.name).join(', ')}; missing:\n  ${problems.join('\n  ')}\n(--only NAME runs the cases that do not need them)`);
  }

  const info = machine();
  const rows: Row[] = [];
  const failures: Array<{ case: string; error: string }> = [];
  for (const c of selected) {
    log(`${c.name}: ${c.about}`);
    try {
      rows.push(...(await c.run({ ...(options.runs !== undefined && { runs: options.runs }), log })));
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      log(`${c.name} FAILED: ${message}`);
      failures.push({ case: c.name, error: message });
    }
  }

  const results: Results & { failures: typeof failures } = {
    complete: !options.subset && failures.length === 0,
    cases: selected.map((c) => c.name),
    ...(options.runs !== undefined && { runs: options.runs }),
    machine: info,
    rows,
    failures,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  if (failures.length > 0) {
    // No table: a partial one would read as if it were complete.
    throw new Error(`${failures.map((f) => f.case).join(', ')} failed (details above and in bench/out/results.json); no table written`);
  }
  writeFileSync(join(outDir, 'RESULTS.md'), renderMarkdown(results));
  const copyUpRows = rows.filter((r) => r.case === 'copy-up');
  if (copyUpRows.length > 0) writeFileSync(join(outDir, 'copy-up.svg'), renderSvg(copyUpRows, `Copy-up strategies, Linux ${info.kernel} (median, min–max)`));
  if (results.complete) {
    copyFileSync(join(outDir, 'RESULTS.md'), join(benchDir, 'RESULTS.md'));
    copyFileSync(join(outDir, 'copy-up.svg'), join(benchDir, 'copy-up.svg'));
    log('complete run: bench/RESULTS.md and bench/copy-up.svg updated');
  }
  log(`results: ${join(outDir, 'results.json')}, ${join(outDir, 'RESULTS.md')}`);
}

try {
  await main();
} catch (error) {
  console.error(`Error: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
