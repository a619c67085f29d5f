// OCI image layouts (oci-layout, index.json, blobs/<alg>/<hex>) in a tar:
// index.json points at manifests, or at indexes of per-platform manifests,
// of which linux/amd64 is taken; every blob is checked against its digest.
import { isDigest, sha256, type Digest } from '../store/digest.js';
import { invalidImage, MAX_JSON_BYTES, parseImageConfig, parseJsonObject } from './config.js';
import type { ImagePlan } from './plan.js';
import { parseReference } from './reference.js';
import type { TarIndex } from './tar-index.js';

interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: { architecture?: string; os?: string };
  annotations?: Record<string, string>;
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);
/** Indexes nested deeper than this are refused, so a cycle cannot recurse forever. */
const MAX_DEPTH = 4;
export const PLATFORM = { os: 'linux', architecture: 'amd64' };

function descriptors(value: unknown, what: string): Descriptor[] {
  if (!Array.isArray(value)) throw invalidImage(`${what} has no list of descriptors`);
  return value.map((d: Partial<Descriptor> | null) => {
    if (typeof d !== 'object' || d === null || typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || !isDigest(d.digest)) {
      throw invalidImage(`${what} has a descriptor without a mediaType and a sha256 digest`);
    }
    if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalidImage(`${what}: descriptor ${d.digest} has an invalid size`);
    return d as Descriptor;
  });
}

function blobPath(digest: Digest): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/** A JSON blob, checked against its descriptor's size and digest. */
async function readBlob(archive: TarIndex, descriptor: Descriptor, what: string): Promise<Buffer> {
  const member = archive.lookup(blobPath(descriptor.digest), `${what} blob`);
  if (member.size !== descriptor.size) throw invalidImage(`${what} ${descriptor.digest} is ${member.size} bytes, its descriptor says ${descriptor.size}`);
  const bytes = await archive.readAll(member, MAX_JSON_BYTES, `${what} ${descriptor.digest}`);
  const actual = sha256(bytes);
  if (actual !== descriptor.digest) throw invalidImage(`${what} blob ${descriptor.digest} has digest ${actual}`);
  return bytes;
}

/** The tag an index entry names: io.containerd.image.name, else a full reference in ref.name. */
function tagOf(descriptor: Descriptor): string[] {
  const annotations = descriptor.annotations ?? {};
  for (const name of [annotations['io.containerd.image.name'], annotations['org.opencontainers.image.ref.name']]) {
    if (!name) continue;
    try {
      const ref = parseReference(name);
      if (ref.tag && !ref.digest) return [`${ref.repository}:${ref.tag}`];
    } catch {
      // a bare tag such as "latest" names no repository
    }
  }
  return [];
}

async function manifestsOf(archive: TarIndex, list: Descriptor[], depth: number, tags: string[]): Promise<Array<[Descriptor, string[]]>> {
  const found: Array<[Descriptor, string[]]> = [];
  for (const descriptor of list) {
    const names = tags.length > 0 ? tags : tagOf(descriptor);
    if (MANIFEST_TYPES.has(descriptor.mediaType)) {
      found.push([descriptor, names]);
    } else if (INDEX_TYPES.has(descriptor.mediaType)) {
      if (depth >= MAX_DEPTH) throw invalidImage(`image indexes are nested more than ${MAX_DEPTH} deep`);
      const index = parseJsonObject(await readBlob(archive, descriptor, 'index'), `index ${descriptor.digest}`);
      const children = descriptors(index.manifests, `index ${descriptor.digest}`).filter(
        (d) => !d.platform || (d.platform.os === PLATFORM.os && d.platform.architecture === PLATFORM.architecture),
      );
      if (children.length === 0) throw invalidImage(`index ${descriptor.digest} has no image for ${PLATFORM.os}/${PLATFORM.architecture}`);
      found.push(...(await manifestsOf(archive, children.slice(0, 1), depth + 1, names)));
    }
    // other artifacts (signatures, attestations) are not images
  }
  return found;
}

export async function readOciLayout(archive: TarIndex): Promise<ImagePlan[]> {
  const layout = parseJsonObject(await archive.readAll(archive.lookup('oci-layout', 'oci-layout'), MAX_JSON_BYTES, 'oci-layout'), 'oci-layout');
  if (layout.imageLayoutVersion !== '1.0.0') throw invalidImage(`unsupported OCI layout version ${JSON.stringify(layout.imageLayoutVersion)}`);
  const index = parseJsonObject(await archive.readAll(archive.lookup('index.json', 'index'), MAX_JSON_BYTES, 'index.json'), 'index.json');
  const manifests = await manifestsOf(archive, descriptors(index.manifests, 'index.json'), 0, []);
  if (manifests.length === 0) throw invalidImage('index.json lists no image manifest');
  const plans: ImagePlan[] = [];
  for (const [descriptor, tags] of manifests) {
    const bytes = await readBlob(archive, descriptor, 'manifest');
    const manifest = parseJsonObject(bytes, `manifest ${descriptor.digest}`);
    const [configDescriptor] = descriptors([manifest.config], `manifest ${descriptor.digest}`);
    const configBytes = await readBlob(archive, configDescriptor!, 'config');
    const config = parseImageConfig(configBytes, `config ${configDescriptor!.digest}`);
    const layers = descriptors(manifest.layers, `manifest ${descriptor.digest}`);
    if (layers.length !== config.rootfs.diff_ids.length) {
      throw invalidImage(`manifest ${descriptor.digest} lists ${layers.length} layer(s) but its config has ${config.rootfs.diff_ids.length} DiffIDs`);
    }
    plans.push({
      id: configDescriptor!.digest,
      configBytes,
      config,
      layers: layers.map((layer) => {
        const member = archive.lookup(blobPath(layer.digest), 'layer blob');
        if (member.size !== layer.size) throw invalidImage(`layer blob ${layer.digest} is ${member.size} bytes, its descriptor says ${layer.size}`);
        return { path: blobPath(layer.digest), member, blobDigest: layer.digest };
      }),
      tags,
      manifest: { digest: descriptor.digest, mediaType: descriptor.mediaType, bytes },
    });
  }
  return plans;
}
