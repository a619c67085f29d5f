// Images and containers with known sizes for the disk usage and prune tests.
import { Readable } from 'node:stream';

import type { Digest } from '../../lib/store/digest.js';
import type { Container } from '../../lib/store/containers.js';
import type { Store } from '../../lib/store/store.js';
import { config, layer, type TestLayer } from '../images/archives.js';

/** A layer of one file of `bytes` bytes (its size as docker counts it). */
export function sizedLayer(name: string, bytes: number): TestLayer {
  return layer({ [name]: 'x'.repeat(bytes) });
}

/** Imports the layers as a chain and adds an image over them; returns its id. */
export async function addImage(store: Store, layers: readonly TestLayer[], options: { tags?: string[]; extra?: Record<string, unknown> } = {}): Promise<Digest> {
  let parent: Digest | null = null;
  for (const l of layers) {
    parent = (await store.layers.import(Readable.from([l.tar]), { parent, expectedDiffId: l.diffId as Digest })).layer.chainId;
  }
  return store.images.add(config(layers.map((l) => l.diffId), options.extra ?? {}), { tags: options.tags ?? [] }).image.id;
}

/** A container made from an image, recorded as docker's ImageID. */
export async function containerOf(store: Store, image: Digest, options: { labels?: Record<string, string>; name?: string } = {}): Promise<Container> {
  const top = store.images.get(image)!.topLayer!;
  return store.containers.create(top, { ...options, image });
}
