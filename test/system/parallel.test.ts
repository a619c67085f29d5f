// Several processes on one root: imports, container creates, commits,
// removals and volume work in parallel, processes that replace and remove an
// image while others create containers from it, and processes that mount and
// unmount one container at once. Every process must end
// cleanly (conflicts are clear errors), fsck must find nothing, and every
// reported result must be in the store.
import { expect } from 'chai';
import { Readable } from 'node:stream';

import { importRootfs } from '../../lib/images/import.js';
import { checkStore, describeFinding } from '../../lib/store/fsck.js';
import { Store } from '../../lib/store/store.js';
import { mountPoints } from '../../lib/system/mountinfo.js';
import { Cleanups, isRoot, mountsBelow, tmpfsDir } from '../support/fixtures.js';
import type { WorkerKind } from '../support/store-worker.js';
import { buildTar } from '../support/tar-builder.js';
import { bundleScript } from '../support/bundle.js';
import { expectClean, Ledger, loopsBacking, startWorker } from '../support/workers.js';

describe('several processes on one root', function () {
  const cleanups = new Cleanups();
  let bundle: string;

  before(function () {
    if (!isRoot) this.skip();
    bundle = bundleScript('test/support/store-worker.ts');
  });
  afterEach(() => cleanups.release());

  async function runTogether(root: string, workers: Array<[WorkerKind, number]>): Promise<{ ledger: Ledger; conflicts: string[] }> {
    // Started together once all have the store open, so that their first calls overlap.
    const started = workers.map(([kind, rounds]) => ({ kind, worker: startWorker(bundle, root, kind, rounds, { held: true }) }));
    await Promise.all(started.map(({ worker }) => worker.ready));
    for (const { worker } of started) worker.start();
    const ledger = new Ledger();
    const conflicts: string[] = [];
    for (const { kind, worker } of started) {
      const result = await worker.done;
      expectClean(result, kind);
      ledger.add(result.lines);
      conflicts.push(...result.lines.filter((line) => line.startsWith('conflict ')));
    }
    return { ledger, conflicts };
  }

  async function expectConsistent(root: string, ledger: Ledger): Promise<void> {
    const store = await Store.open({ root });
    try {
      expect(store.recovered, 'every process closed the store').to.deep.equal([]);
      expect((await checkStore(store)).map(describeFinding)).to.deep.equal([]);
      expect(ledger.check(store)).to.deep.equal([]);
    } finally {
      store.close();
    }
    expect(mountsBelow(root).filter((point) => point !== root)).to.deep.equal([]);
    expect(loopsBacking(root)).to.deep.equal([]);
  }

  it('imports, creates, commits and removes in four processes at once without losing or corrupting anything', async function () {
    this.timeout(120_000);
    const root = await tmpfsDir(cleanups);
    const { ledger } = await runTogether(root, [
      ['mixed', 40],
      ['mixed', 40],
      ['import', 20],
      ['commit', 10],
    ]);
    expect(ledger.reports).to.be.greaterThan(50);
    await expectConsistent(root, ledger);
  });

  it('gives a clear error, not a broken store, when one process removes an image others create containers from', async function () {
    this.timeout(120_000);
    const root = await tmpfsDir(cleanups);
    // The image exists before the users start.
    const seed = await Store.open({ root });
    await importRootfs(seed, Readable.from([buildTar([{ name: 'seed', data: 'seed' }])]), { source: '-', tag: 'shared:latest' });
    seed.close();
    const { ledger, conflicts } = await runTogether(root, [
      ['image-churn', 60],
      ['image-user', 60],
      ['image-user', 60],
      ['image-user', 60],
    ]);
    // Only the conflicts a racing removal may cause, each with a message naming what happened (the layer
    // goes with the image, so a removal between reading the image and reading its layer names the layer).
    for (const line of conflicts) {
      expect(line).to.match(/^conflict (ERR_IMAGE_IN_USE: image \w+ is used by container|ERR_IMAGE_UNKNOWN: (no such image|image \w+ was removed while the container was being created)|ERR_LAYER_UNKNOWN: no such layer)/);
    }
    await expectConsistent(root, ledger);
  });

  it('mounts a container once when several processes mount it at once, and unmounts it with the last unmount', async function () {
    this.timeout(120_000);
    const root = await tmpfsDir(cleanups);
    const seed = await Store.open({ root });
    const { layer } = await seed.layers.import(Readable.from([buildTar([{ name: 'seed', data: 'seed' }])]), { explicit: true });
    const container = await seed.containers.create(layer.chainId, { name: 'shared' });
    const { merged } = seed.containers.layout(container);
    seed.close();
    const mountCount = async () => {
      const store = await Store.open({ root });
      try {
        return store.containers.get(container.id)!.mounts;
      } finally {
        store.close();
      }
    };
    // Six processes, five calls each.
    const inSix = (kind: WorkerKind) => Array.from({ length: 6 }, (): [WorkerKind, number] => [kind, 5]);

    const mounted = await runTogether(root, inSix('mount-shared'));
    expect(mountPoints().filter((point) => point === merged), 'mounts on the merged directory').to.have.length(1);
    expect(await mountCount()).to.equal(30);

    const unmounted = await runTogether(root, inSix('unmount-shared'));
    expect(mountPoints().filter((point) => point === merged)).to.deep.equal([]);
    expect(await mountCount()).to.equal(0);
    expect([...mounted.conflicts, ...unmounted.conflicts]).to.deep.equal([]);
    await expectConsistent(root, unmounted.ledger);
  });
});
