// strata save: images as current Docker (25+) writes them, an OCI image
// layout with uncompressed layer blobs plus docker's manifest.json and
// repositories (format "docker"), or the OCI layout alone (format "oci").
// Layers are the store's byte-exact exports, so each blob's digest is its
// DiffID and the image IDs are unchanged. Older Dockers (20.10) load it too:
// they follow the paths manifest.json gives.
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { headerBlocks } from '../archive/tar-writer.js';
import { sha256, type Digest } from '../store/digest.js';
import type { Image } from '../store/images.js';
import type { Store } from '../store/store.js';
import { fullName, normalizeTag } from './reference.js';

export type SaveFormat = 'docker' | 'oci';

const BLOCK = 512;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

interface Selected {
  image: Image;
  tags: string[];
}

const blobPath = (digest: Digest) => `blobs/sha256/${digest.slice('sha256:'.length)}`;

/** The images to save, each once, with the tags the references named (an ID names none). */
function select(store: Store, references: readonly string[]): Selected[] {
  const selected = new Map<string, Selected>();
  for (const reference of references) {
    const image = store.images.resolve(reference);
    const entry = selected.get(image.id) ?? { image, tags: [] };
    selected.set(image.id, entry);
    let tag: string | undefined;
    try {
      tag = normalizeTag(reference);
    } catch {
      tag = undefined;
    }
    if (tag && image.tags.includes(tag) && !entry.tags.includes(tag)) entry.tags.push(tag);
  }
  return [...selected.values()];
}

function fileEntry(name: string, size: number, mtime: number): Buffer[] {
  return headerBlocks({ name, mode: 0o644, uid: 0, gid: 0, size, mtime, type: '0' });
}

function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

export async function saveImages(store: Store, references: readonly string[], out: Writable, format: SaveFormat): Promise<void> {
  const images = select(store, references);
  await pipeline(archive(store, images, format), out);
}

async function* archive(store: Store, images: Selected[], format: SaveFormat): AsyncGenerator<Buffer> {
  const written = new Set<string>();
  const mtime = 0;
  function* small(name: string, data: Buffer): Generator<Buffer> {
    yield* fileEntry(name, data.length, mtime);
    yield data;
    yield padding(data.length);
  }
  yield* headerBlocks({ name: 'blobs/', mode: 0o755, uid: 0, gid: 0, size: 0, mtime, type: '5' });
  yield* headerBlocks({ name: 'blobs/sha256/', mode: 0o755, uid: 0, gid: 0, size: 0, mtime, type: '5' });

  const index: unknown[] = [];
  const dockerManifest: unknown[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, tags } of images) {
    const layers = store.images.layersOf(image);
    for (const layer of layers) {
      const path = blobPath(layer.diffId);
      if (written.has(path)) continue;
      written.add(path);
      yield* fileEntry(path, layer.tarSize, mtime);
      let size = 0;
      for await (const chunk of store.layers.export(layer.chainId)) {
        size += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      if (size !== layer.tarSize) throw new Error(`layer ${layer.diffId} exported ${size} bytes, expected ${layer.tarSize}`);
      yield padding(size);
    }
    if (!written.has(blobPath(image.id))) {
      written.add(blobPath(image.id));
      yield* small(blobPath(image.id), image.configBytes);
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: image.id, size: image.configBytes.length },
        layers: layers.map((layer) => ({ mediaType: OCI_LAYER, digest: layer.diffId, size: layer.tarSize })),
      }),
    );
    const manifestDigest = sha256(manifest);
    if (!written.has(blobPath(manifestDigest))) {
      written.add(blobPath(manifestDigest));
      yield* small(blobPath(manifestDigest), manifest);
    }
    const descriptor = { mediaType: OCI_MANIFEST, digest: manifestDigest, size: manifest.length };
    if (tags.length === 0) index.push(descriptor);
    for (const tag of tags) {
      const colon = tag.lastIndexOf(':');
      index.push({
        ...descriptor,
        annotations: { 'io.containerd.image.name': fullName(tag), 'org.opencontainers.image.ref.name': tag.slice(colon + 1) },
      });
      (repositories[tag.slice(0, colon)] ??= {})[tag.slice(colon + 1)] = (layers.at(-1)?.diffId ?? image.id).slice('sha256:'.length);
    }
    dockerManifest.push({ Config: blobPath(image.id), RepoTags: tags.length > 0 ? tags : null, Layers: layers.map((l) => blobPath(l.diffId)) });
  }
  yield* small('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: index })));
  if (format === 'docker') yield* small('manifest.json', Buffer.from(JSON.stringify(dockerManifest)));
  yield* small('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  if (format === 'docker' && Object.keys(repositories).length > 0) yield* small('repositories', Buffer.from(JSON.stringify(repositories)));
  yield Buffer.alloc(BLOCK * 2);
}
