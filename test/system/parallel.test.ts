// Several processes on one root: imports, container creates, commits,
// removals and volume work in parallel, processes that replace and remove an
// image while others create containers from it, processes that mount and
// unmount one container at once, and one that commits a container while
// another mounts it. Every process must end
// cleanly (conflicts are clear errors), fsck must find nothing, and every
// reported result must be in the store.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';

import { importRootfs } from '../../lib/images/import.js';
import { sha256, type Digest } from '../../lib/store/digest.js';
import { checkStore, describeFinding } from '../../lib/store/fsck.js';
import { Store } from '../../lib/store/store.js';
import { mountPoints } from '../../lib/system/mountinfo.js';
import { Cleanups, isRoot, mountsBelow, tmpfsDir } from '../support/fixtures.js';
import type { WorkerKind, WorkerResult } from '../support/store-worker.js';
import { buildTar } from '../support/tar-builder.js';
import { bundleScript } from '../support/bundle.js';
import { expectClean, Ledger, loopsBacking, startWorker } from '../support/workers.js';

/** A store at `root` holding one layer and a container named "shared" on it. */
async function seedSharedContainer(root: string) {
  const seed = await Store.open({ root });
  try {
    const { layer } = await seed.layers.import(Readable.from([buildTar([{ name: 'seed', data: 'seed' }])]), { explicit: true });
    const container = await seed.containers.create(layer.chainId, { name: 'shared' });
    return { container, layout: seed.containers.layout(container) };
  } finally {
    seed.close();
  }
}

describe('several processes on one root', function () {
  const cleanups = new Cleanups();
  let bundle: string;

  before(function () {
    if (!isRoot) this.skip();
    bundle = bundleScript('test/support/store-worker.ts');
  });
  afterEach(() => cleanups.release());

  async function runTogether(root: string, workers: Array<[WorkerKind, number]>): Promise<{ ledger: Ledger; conflicts: string[]; results: WorkerResult[] }> {
    // Started together once all have the store open, so that their first calls overlap.
    const started = workers.map(([kind, rounds]) => ({ kind, worker: startWorker(bundle, root, kind, rounds, { held: true }) }));
    await Promise.all(started.map(({ worker }) => worker.ready));
    for (const { worker } of started) worker.start();
    const ledger = new Ledger();
    const conflicts: string[] = [];
    const results: WorkerResult[] = [];
    for (const { kind, worker } of started) {
      const result = await worker.done;
      expectClean(result, kind);
      ledger.add(result.lines);
      conflicts.push(...result.lines.filter((line) => line.startsWith('conflict ')));
      results.push(...result.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as WorkerResult));
    }
    return { ledger, conflicts, results };
  }

  /** Runs `fn` on the root opened in this process, then closes it. */
  async function withStore<T>(root: string, fn: (store: Store) => T | Promise<T>): Promise<T> {
    const store = await Store.open({ root });
    try {
      return await fn(store);
    } finally {
      store.close();
    }
  }

  /** The overlay filesystems mounted on `point`, from /proc/self/mountinfo. */
  function overlayMountsOn(point: string): number {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .filter((fields) => fields[4] === point && fields[fields.indexOf('-') + 1] === 'overlay').length;
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
    const { container, layout: { merged } } = await seedSharedContainer(root);
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

  it('commits a container while another process mounts it: both succeed, one overlay mount, and the layer holds the change', async function () {
    this.timeout(120_000);
    const root = await tmpfsDir(cleanups);
    const { container, layout: { merged, upper } } = await seedSharedContainer(root);

    // Each round starts unmounted with a new change. Whichever process goes
    // first, the commit either adopts the upper directory as the layer (then
    // the mount is of the container on that layer) or streams the changes
    // from the mount; never a mount of a directory that moves into a layer.
    for (let round = 0; round < 6; round++) {
      const name = `change-${round}`;
      const data = randomBytes(1 << 20);
      writeFileSync(join(upper, name), data);
      const { ledger, conflicts, results } = await runTogether(root, [
        ['commit-shared', 1],
        ['mount-shared', 1],
      ]);
      expect(conflicts).to.deep.equal([]);
      const commits = results.filter((result) => result.op === 'commit');
      expect(commits).to.have.length(1);
      const committed = commits[0]!.present!.layers![0] as Digest;

      expect(overlayMountsOn(merged), 'overlay mounts on the merged directory').to.equal(1);
      await withStore(root, async (store) => {
        expect(store.containers.get(container.id)!.mounts).to.equal(1);
        const layerDir = store.layers.chainDirs(committed)[0]!;
        expect(readFileSync(join(layerDir, name)).equals(data), 'the committed layer holds the change').to.equal(true);
        expect(sha256(await buffer(store.layers.export(committed)))).to.equal(store.layers.get(committed)!.diffId);
        expect(readFileSync(join(merged, name)).equals(data), 'the mount shows the change').to.equal(true);
        // What is written in the mount lands in the container's own writable layer, never in the layer it committed.
        writeFileSync(join(merged, 'probe'), 'probe');
        expect(existsSync(join(store.containers.layout(store.containers.get(container.id)!).upper, 'probe'))).to.equal(true);
        expect(existsSync(join(layerDir, 'probe'))).to.equal(false);
        rmSync(join(merged, 'probe'));
        expect(sha256(await buffer(store.layers.export(committed)))).to.equal(store.layers.get(committed)!.diffId);
        await store.containers.unmount('shared');
      });
      expect(overlayMountsOn(merged)).to.equal(0);
      await expectConsistent(root, ledger);
    }

    await withStore(root, async (store) => {
      await store.containers.remove('shared');
      expect(store.containers.list()).to.deep.equal([]);
      expect(store.db.prepare('SELECT count(*) AS n FROM container_claims').get()).to.deep.equal({ n: 0 });
      expect((await checkStore(store)).map(describeFinding)).to.deep.equal([]);
    });
    expect(mountsBelow(root).filter((point) => point !== root)).to.deep.equal([]);
    expect(existsSync(upper)).to.equal(false);
    expect(loopsBacking(root)).to.deep.equal([]);
  });
});
