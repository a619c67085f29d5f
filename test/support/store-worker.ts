// A separate process that works on a store in a loop until it is killed or
// has done `rounds` rounds: args ROOT KIND [ROUNDS]. Run bundled (see
// bundle.ts) or with the tsx loader. It prints "ready" once
// the store is open, and starts its rounds once its stdin ends (a test holds it
// open to start several workers together); then it prints one JSON line per
// result as soon as the call that made it has returned, so a test knows what
// was reported done when it kills the process. Used by the crash-injection and
// parallel-process tests.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { importRootfs } from '../../lib/images/import.js';
import { loadImages } from '../../lib/images/load.js';
import { Store } from '../../lib/store/store.js';
import { dockerArchive } from '../images/archives.js';
import { buildTar, sha256 } from './tar-builder.js';

export type WorkerKind =
  | 'import'
  | 'commit'
  | 'remove'
  | 'volume-create'
  | 'volume-remove'
  | 'image-churn'
  | 'image-user'
  | 'mount-shared'
  | 'unmount-shared'
  | 'commit-shared'
  | 'load'
  | 'mixed';

type Objects = { layers?: string[]; images?: string[]; containers?: string[]; volumes?: string[] };

/**
 * What a worker reports: `present` (done) must be in the store afterwards,
 * `absent` (removed) must not; `removing` may be either from then on, since
 * the worker has started removing them.
 */
export interface WorkerResult {
  op: string;
  present?: Objects;
  absent?: Objects;
  removing?: Objects;
}

const [root, kind, rounds] = process.argv.slice(2) as [string, WorkerKind, string | undefined];
const store = await Store.open({ root });
/**
 * Written before the call returns to the loop: process.stdout may queue a
 * write to a pipe, and a line still queued at the kill was never reported.
 */
function say(line: string): void {
  const data = Buffer.from(`${line}\n`);
  for (let at = 0; at < data.length; ) {
    try {
      at += writeSync(1, data, at);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
    }
  }
}
const report = (result: WorkerResult) => say(JSON.stringify(result));
say('ready');

/** A small layer tar no other call has made (a random file, some fixed ones). */
const uniqueTar = () =>
  Readable.from([
    buildTar([
      { name: 'etc/', type: '5' },
      { name: 'etc/hostname', data: 'strata\n' },
      { name: `data/${randomBytes(8).toString('hex')}`, data: randomBytes(4096) },
    ]),
  ]);

/** A base layer every worker shares: importing it again returns the same layer. */
const sharedBase = async () => (await store.layers.import(Readable.from([buildTar([{ name: 'base', data: 'base\n' }])]), { explicit: true })).layer;

/** Conflicts with other processes on shared objects are clear errors: those are expected, anything else is not. */
const EXPECTED_CONFLICTS = new Set(['ERR_LAYER_IN_USE', 'ERR_LAYER_UNKNOWN', 'ERR_CONTAINER_UNKNOWN', 'ERR_CONTAINER_BUSY', 'ERR_IMAGE_UNKNOWN', 'ERR_IMAGE_IN_USE', 'ERR_VOLUME_UNKNOWN', 'ERR_VOLUME_IN_USE']);

const steps = {
  async import() {
    const { layer } = await store.layers.import(uniqueTar(), { explicit: true });
    report({ op: 'import', present: { layers: [layer.chainId] } });
    const image = await importRootfs(store, uniqueTar(), { source: '-', tag: `crash/${randomBytes(4).toString('hex')}:1` });
    report({ op: 'image', present: { images: [image.id], layers: [image.topLayer!] } });
  },
  async commit() {
    const container = await store.containers.create((await sharedBase()).chainId);
    report({ op: 'create', present: { containers: [container.id] } });
    for (let i = 0; i < 2; i++) {
      writeFileSync(join(store.containers.layout(container).upper, `file-${i}`), randomBytes(2048));
      const { layer } = await store.containers.commit(container.id);
      report({ op: 'commit', present: { layers: [layer.chainId], containers: [container.id] } });
    }
  },
  async remove() {
    const { layer } = await store.layers.import(uniqueTar(), { explicit: true });
    const container = await store.containers.create(layer.chainId);
    report({ op: 'create', present: { layers: [layer.chainId], containers: [container.id] } });
    report({ op: 'removing', removing: { containers: [container.id] } });
    await store.containers.remove(container.id);
    report({ op: 'remove-container', absent: { containers: [container.id] } });
    report({ op: 'removing', removing: { layers: [layer.chainId] } });
    await store.layers.remove(layer.chainId);
    report({ op: 'remove-layer', absent: { layers: [layer.chainId] } });
  },
  async 'volume-create'() {
    const volume = await store.volumes.create(`v-${randomBytes(6).toString('hex')}`);
    report({ op: 'volume-create', present: { volumes: [volume.name] } });
  },
  async 'volume-remove'() {
    const volume = await store.volumes.create(`v-${randomBytes(6).toString('hex')}`);
    writeFileSync(join(volume.mountpoint, 'data'), randomBytes(4096));
    report({ op: 'volume-create', present: { volumes: [volume.name] } });
    report({ op: 'removing', removing: { volumes: [volume.name] } });
    await store.volumes.remove(volume.name);
    report({ op: 'volume-remove', absent: { volumes: [volume.name] } });
  },
} satisfies Record<string, () => Promise<void>>;

/** The operations `mixed` cycles through. */
const kinds = Object.keys(steps) as Array<keyof typeof steps>;

/** Conflicting work on one image: a new image under the same tag, then its removal, while others create containers from it. */
const imageSteps = {
  async 'image-churn'() {
    const image = await importRootfs(store, uniqueTar(), { source: '-', tag: 'shared:latest' });
    report({ op: 'image', present: { images: [image.id], layers: [image.topLayer!] } });
    report({ op: 'removing', removing: { images: [image.id], layers: [image.topLayer!] } });
    await store.images.remove('shared:latest');
  },
  async 'image-user'() {
    const image = store.images.resolve('shared:latest');
    const container = await store.containers.create(image.topLayer!, { image: image.id });
    report({ op: 'create', present: { containers: [container.id] } });
    report({ op: 'removing', removing: { containers: [container.id] } });
    await store.containers.remove(container.id);
    report({ op: 'remove-container', absent: { containers: [container.id] } });
  },
} satisfies Record<string, () => Promise<void>>;

/** A docker-archive load of layers no other call has made: the next layer is applied while one is synced and registered. */
const loadSteps = {
  async load() {
    const layers = [0, 1, 2].map((i) => {
      const tar = buildTar([
        { name: `layer${i}/`, type: '5' },
        { name: `layer${i}/data`, data: randomBytes(1 << 20) },
        ...Array.from({ length: 50 }, (_, f) => ({ name: `layer${i}/small-${f}`, data: randomBytes(512) })),
      ]);
      return { tar, diffId: sha256(tar) };
    });
    const archive = dockerArchive(layers, { tags: [`crash/load-${randomBytes(4).toString('hex')}:1`] });
    const { image } = (await loadImages(store, Readable.from([archive])))[0]!;
    report({ op: 'load', present: { images: [image.id], layers: [image.topLayer!] } });
  },
} satisfies Record<string, () => Promise<void>>;

/** Mounts, unmounts and commits of one container, named "shared", made before the workers start. */
const sharedContainerSteps = {
  async 'mount-shared'() {
    await store.containers.mount('shared');
    report({ op: 'mount', present: { containers: [store.containers.resolve('shared').id] } });
  },
  async 'unmount-shared'() {
    await store.containers.unmount('shared');
    report({ op: 'unmount', present: { containers: [store.containers.resolve('shared').id] } });
  },
  async 'commit-shared'() {
    const { layer } = await store.containers.commit('shared');
    report({ op: 'commit', present: { layers: [layer.chainId], containers: [store.containers.resolve('shared').id] } });
  },
} satisfies Record<string, () => Promise<void>>;

const all: Record<string, () => Promise<void>> = { ...steps, ...imageSteps, ...sharedContainerSteps, ...loadSteps };
await once(process.stdin.resume(), 'end');
for (let round = 0; rounds === undefined || round < Number(rounds); round++) {
  const step = all[kind === 'mixed' ? kinds[round % kinds.length]! : kind]!;
  try {
    await step();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (!code || !EXPECTED_CONFLICTS.has(code)) throw error;
    say(`conflict ${code}: ${(error as Error).message}`);
  }
}
store.close();
