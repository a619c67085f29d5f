// What an archive holds, read and checked before anything is imported: each
// image's config and where each of its layers lies in the archive.
import type { Digest } from '../store/digest.js';
import type { ManifestRecord } from '../store/images.js';
import type { ImageConfig } from './config.js';
import type { TarMember } from './tar-index.js';

export interface LayerSource {
  /** The archive path, for messages. */
  path: string;
  member: TarMember;
  /** The sha256 the stored bytes must have, when the archive names the blob by it. */
  blobDigest?: Digest;
}

export interface ImagePlan {
  id: Digest;
  configBytes: Buffer;
  config: ImageConfig;
  layers: LayerSource[];
  /** Familiar name:tag references. */
  tags: string[];
  manifest?: ManifestRecord;
}

/** The digest a content-addressed path names ("blobs/sha256/<hex>", "<hex>.json"), if any. */
export function digestInPath(path: string): Digest | undefined {
  const match = /(?:^|\/)(?:blobs\/sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(path);
  return match ? `sha256:${match[1]}` : undefined;
}
