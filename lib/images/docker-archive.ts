// docker save archives: manifest.json lists each image's config and layer
// paths, either the legacy "<id>/layer.tar" directories or, since Docker 25,
// "blobs/sha256/<digest>" (the archive is then also an OCI image layout).
import { sha256, shortId } from '../store/digest.js';
import { invalidImage, MAX_JSON_BYTES, parseImageConfig } from './config.js';
import { digestInPath, type ImagePlan } from './plan.js';
import { normalizeTag } from './reference.js';
import type { TarIndex } from './tar-index.js';

interface ManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

function parseManifest(bytes: Buffer): ManifestEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw invalidImage(`manifest.json is not valid JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(value) || value.length === 0) throw invalidImage('manifest.json is not a non-empty list of images');
  for (const entry of value as Array<Partial<ManifestEntry> | null>) {
    const ok =
      typeof entry === 'object' &&
      entry !== null &&
      typeof entry.Config === 'string' &&
      Array.isArray(entry.Layers) &&
      entry.Layers.every((layer) => typeof layer === 'string') &&
      (entry.RepoTags == null || (Array.isArray(entry.RepoTags) && entry.RepoTags.every((tag) => typeof tag === 'string')));
    if (!ok) throw invalidImage('manifest.json has an entry without a Config path and a Layers list');
  }
  return value as ManifestEntry[];
}

export async function readDockerArchive(archive: TarIndex): Promise<ImagePlan[]> {
  const manifest = parseManifest(await archive.readAll(archive.lookup('manifest.json', 'manifest'), MAX_JSON_BYTES, 'manifest.json'));
  const plans: ImagePlan[] = [];
  for (const entry of manifest) {
    const configBytes = await archive.readAll(archive.lookup(entry.Config, 'config'), MAX_JSON_BYTES, `config ${entry.Config}`);
    const id = sha256(configBytes);
    const named = digestInPath(entry.Config);
    if (named && named !== id) throw invalidImage(`config ${entry.Config} has digest ${id}, not the one its name gives`);
    const config = parseImageConfig(configBytes, `config ${entry.Config}`);
    if (entry.Layers.length !== config.rootfs.diff_ids.length) {
      throw invalidImage(
        `image ${shortId(id)}: manifest.json lists ${entry.Layers.length} layer(s) but its config has ${config.rootfs.diff_ids.length} DiffIDs`,
      );
    }
    const layers = entry.Layers.map((path) => {
      const blobDigest = path.startsWith('blobs/') ? digestInPath(path) : undefined;
      return { path, member: archive.lookup(path, 'layer'), ...(blobDigest && { blobDigest }) };
    });
    plans.push({ id, configBytes, config, layers, tags: (entry.RepoTags ?? []).map(normalizeTag) });
  }
  return plans;
}
