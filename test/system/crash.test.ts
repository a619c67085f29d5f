// Crash injection: a worker process is killed with SIGKILL at a random moment
// during imports, commits, removals, volume creates and removals, and image
// loads, hundreds of times. After each kill the store is opened (which repairs what
// the kill left) and checked: fsck finds nothing, everything the worker
// reported done is as it said, and no mount or loop device is left.
import { expect } from 'chai';

import { checkStore, describeFinding } from '../../lib/store/fsck.js';
import { Store } from '../../lib/store/store.js';
import { Cleanups, isRoot, mountsBelow, tmpfsDir } from '../support/fixtures.js';
import type { WorkerKind } from '../support/store-worker.js';
import { bundleScript } from '../support/bundle.js';
import { inVm } from '../support/vm.js';
import { Ledger, loopsBacking, startWorker } from '../support/workers.js';

const KINDS: WorkerKind[] = ['import', 'commit', 'remove', 'volume-create', 'volume-remove', 'load'];
/** 250 kills on the host; the slow 6.1 guest, there for its kernel, repeats a sample of them. */
const KILLS_PER_KIND = inVm ? 8 : 50;
/**
 * Kills land up to this long after the worker has the store open: most during
 * an operation, some between two. An import, commit or load takes longer than
 * 80 ms in the slow guest, which would then kill nearly all of them before
 * they report anything.
 */
const MAX_DELAY_MS = inVm ? 400 : 80;

describe('crash injection', function () {
  const cleanups = new Cleanups();
  let bundle: string;

  before(function () {
    if (!isRoot) this.skip();
    bundle = bundleScript('test/support/store-worker.ts');
  });
  afterEach(() => cleanups.release());

  /** Kills a worker of `kind` on `root` again and again, checking the store after each kill. */
  async function killRepeatedly(root: string, kind: WorkerKind): Promise<{ kills: number; reports: number; repairs: number }> {
    const ledger = new Ledger();
    let repairs = 0;
    for (let kill = 0; kill < KILLS_PER_KIND; kill++) {
      const worker = startWorker(bundle, root, kind);
      await worker.ready;
      const delay = Math.floor(Math.random() * MAX_DELAY_MS);
      await new Promise((resolve) => setTimeout(resolve, delay));
      worker.process.kill('SIGKILL');
      const { code, lines, stderr } = await worker.done;
      const context = `${kind}, kill ${kill} after ${delay}ms`;
      expect(code, `${context}: the worker failed by itself: ${stderr}`).to.equal(null);
      ledger.add(lines);

      const store = await Store.open({ root });
      try {
        repairs += store.recovered.length;
        expect((await checkStore(store)).map(describeFinding), `${context}: fsck after open (which recovered: ${store.recovered.join('; ')})`).to.deep.equal([]);
        expect(ledger.check(store), `${context} (open recovered: ${store.recovered.join("; ")})`).to.deep.equal([]);
      } finally {
        store.close();
      }
      expect(mountsBelow(root).filter((point) => point !== root), context).to.deep.equal([]);
      expect(loopsBacking(root), context).to.deep.equal([]);
    }
    return { kills: KILLS_PER_KIND, reports: ledger.reports, repairs };
  }

  it(`kills workers ${KILLS_PER_KIND} times for each of ${KINDS.join(', ')}: the store stays consistent and keeps what was reported done`, async function () {
    this.timeout(300_000);
    const roots = await Promise.all(KINDS.map(() => tmpfsDir(cleanups)));
    // Two kinds at a time, each on its own root: this machine has two cores.
    const queue = KINDS.map((kind, i) => () => killRepeatedly(roots[i]!, kind));
    const totals = { kills: 0, reports: 0, repairs: 0 };
    await Promise.all(
      [0, 1].map(async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          const result = await next();
          totals.kills += result.kills;
          totals.reports += result.reports;
          totals.repairs += result.repairs;
        }
      }),
    );
    expect(totals.kills).to.equal(KINDS.length * KILLS_PER_KIND);
    // Kills landed after work was reported, and in the middle of work that open had to repair.
    expect(totals.reports).to.be.greaterThan(totals.kills);
    expect(totals.repairs).to.be.greaterThan(0);
  });
});
