// Prune: only what nothing uses goes (no mounted container, no image a
// container was made from, no layer another image needs), narrowed by
// docker's filters; the space reported is what df stops counting. Through
// the library and the CLI, which asks before it prunes.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Digest } from '../../lib/store/digest.js';
import { pruneContainers, pruneImages, pruneSystem } from '../../lib/store/prune.js';
import { Store } from '../../lib/store/store.js';
import { diskUsage } from '../../lib/store/usage.js';
import { parseUntil } from '../../lib/cli/prune.js';
import { bundleScript } from '../support/bundle.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, rejection, tmpfsDir } from '../support/fixtures.js';
import { addImage, containerOf, sizedLayer } from './fixtures.js';

describe('prune', function () {
  this.timeout(60_000);
  const cleanups = new Cleanups();
  let root: string;
  let store: Store;
  let image: Digest;
  const base = sizedLayer('base', 1000);

  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    root = await tmpfsDir(cleanups);
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
    image = await addImage(store, [base], { tags: ['base:1'] });
  });
  afterEach(async function () {
    for (const c of store.containers.list()) await store.containers.remove(c.id, { force: true }).catch(() => {});
    await cleanups.release();
  });

  async function containerWith(bytes: number, labels: Record<string, string> = {}) {
    const container = await containerOf(store, image, { labels });
    writeFileSync(join(await store.containers.mount(container.id), 'data'), Buffer.alloc(bytes, 1));
    await store.containers.unmount(container.id);
    return container.id;
  }

  it('removes containers that are not mounted, reporting the bytes df stops counting', async function () {
    const a = await containerWith(100);
    const b = await containerWith(250);
    const mounted = await containerWith(999);
    await store.containers.mount(mounted);

    const before = await diskUsage(store);
    const result = await pruneContainers(store);
    expect(result.deleted.sort()).to.deep.equal([a, b].sort());
    expect(result.spaceReclaimed).to.equal(350);
    const after = await diskUsage(store);
    expect(before.containers.totalSize - after.containers.totalSize).to.equal(result.spaceReclaimed);
    expect(store.containers.list().map((c) => c.id)).to.deep.equal([mounted]);
    expect(store.images.get(image), 'the image stays').to.not.equal(undefined);
    await store.containers.unmount(mounted);
  });

  it('filters containers by label (key, key=value, label!=) and by creation time', async function () {
    const web = await containerWith(10, { tier: 'web' });
    const db = await containerWith(20, { tier: 'db', keep: '' });
    const bare = await containerWith(30);

    expect((await pruneContainers(store, { label: ['tier=cache'] })).deleted).to.deep.equal([]);
    expect((await pruneContainers(store, { until: new Date(Date.now() - 3_600_000) })).deleted, 'all newer than an hour ago').to.deep.equal([]);
    expect((await pruneContainers(store, { label: ['tier'], labelNot: ['keep'] }))).to.deep.equal({ deleted: [web], spaceReclaimed: 10 });
    expect((await pruneContainers(store, { labelNot: ['tier=db'], until: new Date(Date.now() + 1000) }))).to.deep.equal({ deleted: [bare], spaceReclaimed: 30 });
    expect(store.containers.list().map((c) => c.id)).to.deep.equal([db]);
  });

  it('removes dangling images, with all every image no container uses, keeping layers still needed', async function () {
    const web = await addImage(store, [base, sizedLayer('web', 200)], { tags: ['web:1'] });
    const dangling = await addImage(store, [base, sizedLayer('old', 300)]);
    const tool = await addImage(store, [sizedLayer('tool', 50)], { tags: ['tool:1', 'tool:latest'], extra: { config: { Labels: { team: 'infra' } } } });
    await containerOf(store, web);

    const before = await diskUsage(store);
    const first = await pruneImages(store);
    expect(first.deleted[0]).to.deep.equal({ deleted: dangling });
    expect(first.deleted).to.have.length(2); // the image, its own layer (the base is shared)
    expect(first.spaceReclaimed).to.equal(300);
    const middle = await diskUsage(store);
    expect(before.images.totalSize - middle.images.totalSize).to.equal(300);

    expect((await pruneImages(store, { all: true, filters: { labelNot: ['team=infra'] } })).deleted, 'base:1 holds only the shared base').to.deep.equal([
      { untagged: 'base:1' },
      { deleted: image },
    ]);
    const second = await pruneImages(store, { all: true, filters: { label: ['team'], until: new Date('2025-01-01') } });
    expect(second.deleted).to.deep.include.members([{ untagged: 'tool:1' }, { untagged: 'tool:latest' }, { deleted: tool }]);
    expect(second.spaceReclaimed).to.equal(50);
    expect(store.images.list().map((i) => i.id)).to.deep.equal([web]);
    expect((await diskUsage(store)).images.totalSize, 'the base stays under web').to.equal(1200);
  });

  it('system prune: containers, anonymous volumes with volumes, images; until is refused with volumes', async function () {
    const container = await containerWith(400);
    const anonymous = await store.volumes.create();
    writeFileSync(join(anonymous.mountpoint, 'v'), Buffer.alloc(70));
    await store.volumes.create('named');

    const error = await rejection(pruneSystem(store, { volumes: true, filters: { until: new Date() } }));
    expect(error.message).to.match(/until.*not supported with volumes/);
    const result = await pruneSystem(store, { all: true, volumes: true });
    expect(result.containers.deleted).to.deep.equal([container]);
    expect(result.volumes!.deleted).to.deep.equal([anonymous.name]);
    expect(result.images.deleted).to.deep.include({ deleted: image });
    expect(result.spaceReclaimed).to.equal(400 + 70 + 1000);
    expect(store.volumes.list().map((v) => v.name)).to.deep.equal(['named']);
    const usage = await diskUsage(store);
    expect([usage.images.totalSize, usage.containers.totalSize]).to.deep.equal([0, 0]);
  });

  it('parses until as docker: durations, Unix seconds, dates', function () {
    const now = Date.parse('2025-06-01T12:00:00Z');
    expect(parseUntil('90m', now).toISOString()).to.equal('2025-06-01T10:30:00.000Z');
    expect(parseUntil('1h30m', now).toISOString()).to.equal('2025-06-01T10:30:00.000Z');
    expect(parseUntil('1700000000', now).toISOString()).to.equal('2023-11-14T22:13:20.000Z');
    expect(parseUntil('1700000000.5', now).toISOString()).to.equal('2023-11-14T22:13:20.500Z');
    expect(parseUntil('2024-01-02T03:04:05Z', now).toISOString()).to.equal('2024-01-02T03:04:05.000Z');
    expect(() => parseUntil('yesterday', now)).to.throw(/invalid until filter "yesterday"/);
  });

  it('through the CLI: asks unless -f, refuses without a terminal, lists what went and the space', async function () {
    const labelled = await containerWith(1234, { app: 'x' });
    await containerWith(5);
    const cli = (...args: string[]) => strata(['--root', root, ...args]);

    for (const args of [['container', 'prune'], ['image', 'prune'], ['system', 'prune'], ['volume', 'prune']]) {
      const refused = cli(...args);
      expect(refused, args.join(' ')).to.include({ code: 2, stdout: '' });
      expect(refused.stderr).to.equal('Error: refusing to prune without confirmation: standard input is not a terminal; use -f/--force\n');
    }
    expect(store.containers.list()).to.have.length(2);
    expect(cli('container', 'prune', '-f', '--filter', 'color=red').stderr).to.match(/^Error: invalid filter 'color'/);
    expect(cli('volume', 'prune', '-f', '--filter', 'until=1h').stderr).to.match(/^Error: invalid filter 'until'/);
    expect(cli('system', 'prune', '-f', '--volumes', '--filter', 'until=1h').stderr).to.equal('Error: the "until" filter is not supported with --volumes\n');

    const pruned = cli('container', 'prune', '-f', '--filter', 'label=app=x', '--filter', 'until=2099-01-01');
    expect(pruned).to.include({ code: 0, stdout: `Deleted Containers:\n${labelled}\n\nTotal reclaimed space: 1.23kB\n` });
    const all = cli('system', 'prune', '-af');
    expect(all.code, all.stderr).to.equal(0);
    expect(all.stdout).to.match(/^Deleted Containers:\n[0-9a-f]{64}\n\nDeleted Images:\nuntagged: base:1\ndeleted: sha256:[0-9a-f]{64}\ndeleted: sha256:[0-9a-f]{64}\n\nTotal reclaimed space: 1(\.\d+)?kB\n$/);
    expect(cli('image', 'prune', '-f').stdout).to.equal('Total reclaimed space: 0B\n');
  });

  it('on a terminal, prunes only after a yes', async function () {
    const id = await containerWith(10);
    // script(1) gives the command a terminal; the answer is typed into it.
    const onTerminal = (answer: string) => {
      const command = [process.execPath, bundleScript('lib/cli/main.ts'), '--root', root, 'container', 'prune'].join(' ');
      const result = spawnSync('script', ['-qec', command, '/dev/null'], { input: `${answer}\n` });
      expect(result.status, result.stderr.toString()).to.equal(0);
      return result.stdout.toString();
    };
    const declined = onTerminal('n');
    expect(declined).to.include('WARNING! This will remove all containers that are not mounted.\r\nAre you sure you want to continue? [y/N]');
    expect(declined).to.not.include('Total reclaimed space');
    expect(store.containers.get(id)).to.not.equal(undefined);
    expect(onTerminal('y')).to.include(`Deleted Containers:\r\n${id}\r\n\r\nTotal reclaimed space: 10B`);
    expect(store.containers.get(id)).to.equal(undefined);
  });
});
