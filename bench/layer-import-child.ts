// One timed layer import or export in a fresh process, for bench/layer-import.ts,
// which bundles this file and runs it with plain node:
//   node child.mjs apply|export LAYER.tar DIR SPLIT.json
// It prints { seconds, cpuSeconds, maxRssMb, splitBytes } as JSON.
import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';

import { applyLayerArchive } from '../lib/archive/apply.js';
import { exportLayerArchive } from '../lib/archive/export.js';

/**
 * This process's peak RSS, from VmHWM: getrusage's maxRSS would report the
 * parent's when that was larger (the kernel carries it across fork and exec).
 */
function peakRssMb(): number {
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** Applies the tar into dir (saving the tar-split), or exports dir back. */
async function child(mode: string, tar: string, dir: string, splitFile: string): Promise<void> {
  const cpuAtStart = process.cpuUsage();
  let seconds: number;
  let splitBytes = 0;
  if (mode === 'apply') {
    const start = performance.now();
    // As `strata layer import FILE` and `strata load` read a layer: in place.
    const file = await open(tar, 'r');
    const result = await applyLayerArchive({ file, start: 0, length: (await file.stat()).size }, dir, { whiteouts: 'overlay' })
      .finally(() => file.close());
    seconds = (performance.now() - start) / 1000;
    const saved = { diffId: result.diffId, split: result.tarSplit.toString('base64'), checkpoints: result.checkpoints.toString('base64') };
    writeFileSync(splitFile, JSON.stringify(saved));
    splitBytes = result.tarSplit.length;
  } else {
    const saved = JSON.parse(readFileSync(splitFile, 'utf8')) as { diffId: string; split: string; checkpoints: string };
    const start = performance.now();
    const checkpoints = Buffer.from(saved.checkpoints, 'base64');
    for await (const _chunk of exportLayerArchive(dir, Buffer.from(saved.split, 'base64'), saved.diffId, checkpoints)) {
      // consumed like a pipe would be
    }
    seconds = (performance.now() - start) / 1000;
  }
  const cpu = process.cpuUsage(cpuAtStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  process.stdout.write(JSON.stringify({ seconds, cpuSeconds, maxRssMb: peakRssMb(), splitBytes }));
}

const [mode, tar, dir, splitFile] = process.argv.slice(2);
await child(mode!, tar!, dir!, splitFile!);
