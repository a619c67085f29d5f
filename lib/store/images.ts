// Images: a config (kept byte-exact, addressed by its sha256) over a layer
// chain, named by tags. An image holds a reference on its top layer, taken
// and dropped in the same transaction as its row.
import { parseImageConfig, type ImageConfig } from '../images/config.js';
import { normalizeTag, parseReference } from '../images/reference.js';
import { hexPrefixBounds, transaction, type Db } from './database.js';
import { chainId as computeChainId, sha256, shortId, type Digest } from './digest.js';
import { StoreError } from './errors.js';
import type { Layer, LayerStore } from './layers.js';

export interface Image {
  id: Digest;
  /** The config's exact bytes. */
  configBytes: Buffer;
  config: ImageConfig;
  /** The ChainID of the top layer; null for an image without layers. */
  topLayer: Digest | null;
  /** familiar name:tag, sorted. */
  tags: string[];
  /** repository@manifest-digest for manifests the image came with. */
  digests: string[];
  /** The config's created time, or when it was added. */
  created: string;
  added: string;
}

export interface ManifestRecord {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

export interface AddImageResult {
  image: Image;
  /** False when an image with this config was already stored. */
  created: boolean;
  /** Tags that moved here from another image, which may now be dangling. */
  movedTags: string[];
}

export interface RemoveImageResult {
  untagged: string[];
  deleted: Digest[];
  /** Layers the removal left unused, already deleted from the metadata. */
  doomedLayers: Layer[];
}

interface ImageRow {
  id: Digest;
  config: Buffer;
  top_layer: Digest | null;
  created: string;
  added: string;
}

/** (image, value) rows as a map from image to its values, in row order. */
function groupByImage(rows: ReadonlyArray<[Digest, string]>): Map<Digest, string[]> {
  const groups = new Map<Digest, string[]>();
  for (const [image, value] of rows) {
    const group = groups.get(image);
    if (group) group.push(value);
    else groups.set(image, [value]);
  }
  return groups;
}

/** The ChainIDs of a config's layers, bottom first. */
export function chainIdsOf(config: ImageConfig): Digest[] {
  const chain: Digest[] = [];
  for (const diffId of config.rootfs.diff_ids) chain.push(computeChainId(chain.at(-1) ?? null, diffId));
  return chain;
}

export class ImageStore {
  constructor(
    private readonly db: Db,
    private readonly layers: LayerStore,
  ) {}

  get(id: Digest): Image | undefined {
    const row = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
    return row && this.toImage(row);
  }

  list(options: { dangling?: boolean } = {}): Image[] {
    const rows = this.db.prepare('SELECT * FROM images ORDER BY created DESC, id').all() as ImageRow[];
    // Tags and manifests of all images in one query each, not two per image.
    const tags = groupByImage(this.db.prepare('SELECT image, name FROM image_tags ORDER BY name').raw().all() as Array<[Digest, string]>);
    const manifests = groupByImage(
      this.db.prepare('SELECT image, digest FROM image_manifests ORDER BY digest').raw().all() as Array<[Digest, string]>,
    );
    const images = rows.map((row) => this.toImage(row, tags.get(row.id) ?? [], manifests.get(row.id) ?? []));
    return options.dangling === undefined ? images : images.filter((image) => (image.tags.length === 0) === options.dangling);
  }

  /**
   * Finds an image by tag (alpine means alpine:latest), name@digest, ID, or a
   * unique ID prefix, in that order, as docker does.
   */
  resolve(reference: string): Image {
    if (reference.startsWith('sha256:')) return this.byIdPrefix(reference.slice('sha256:'.length), reference);
    // A tag first: "abc" may name a repository as well as prefix an ID.
    if (!reference.includes('@')) {
      const tagged = this.byTag(reference);
      if (tagged) return tagged;
    }
    if (/^[0-9a-f]{1,64}$/.test(reference)) return this.byIdPrefix(reference, reference);
    const parsed = parseReference(reference);
    if (parsed.digest) {
      const row = this.db
        .prepare('SELECT * FROM images WHERE id = ? OR id IN (SELECT image FROM image_manifests WHERE digest = ?) LIMIT 1')
        .get(parsed.digest, parsed.digest) as ImageRow | undefined;
      if (row) return this.toImage(row);
    }
    throw new StoreError('ERR_IMAGE_UNKNOWN', `no such image: ${reference}`);
  }

  /**
   * Registers an image whose layers are all in the store, with its tags (a
   * tag on another image moves here). Call inside the caller's transaction.
   */
  addInTransaction(configBytes: Buffer, options: { tags?: readonly string[]; manifest?: ManifestRecord } = {}): AddImageResult {
    const config = parseImageConfig(configBytes);
    const id = sha256(configBytes);
    const tags = (options.tags ?? []).map(normalizeTag);
    const chain = chainIdsOf(config);
    const top = chain.at(-1) ?? null;
    let created = false;
    if (!this.get(id)) {
      if (top !== null) {
        if (!this.layers.get(top)) {
          throw new StoreError('ERR_LAYER_UNKNOWN', `image ${shortId(id)} needs layer ${shortId(top)}, which is not in the store`);
        }
        this.layers.retainInTransaction(top);
      }
      const when = new Date().toISOString();
      this.db
        .prepare('INSERT INTO images (id, config, top_layer, created, added) VALUES (?, ?, ?, ?, ?)')
        .run(id, configBytes, top, typeof config.created === 'string' ? config.created : when, when);
      created = true;
    }
    if (options.manifest) {
      this.db
        .prepare('INSERT OR IGNORE INTO image_manifests (digest, image, media_type, manifest) VALUES (?, ?, ?, ?)')
        .run(options.manifest.digest, id, options.manifest.mediaType, options.manifest.bytes);
    }
    const movedTags = tags.filter((tag) => this.setTag(tag, id));
    return { image: this.get(id)!, created, movedTags };
  }

  add(configBytes: Buffer, options: { tags?: readonly string[]; manifest?: ManifestRecord } = {}): AddImageResult {
    return transaction(this.db, () => this.addInTransaction(configBytes, options));
  }

  /** Tags an image (a tag on another image moves here); returns the normalized tag. */
  tag(reference: string, target: string): string {
    const tag = normalizeTag(target);
    transaction(this.db, () => this.setTag(tag, this.resolve(reference).id));
    return tag;
  }

  containersOf(image: Digest): string[] {
    const rows = this.db.prepare('SELECT container FROM container_images WHERE image = ? ORDER BY container').all(image) as Array<{ container: string }>;
    return rows.map((row) => row.container);
  }

  /**
   * docker rmi: a tag reference untags (and removes the image once it has no
   * tag left); an ID removes the image, refusing if it has several tags or
   * containers use it, unless forced. Layers left unused are deleted: pass
   * doomedLayers to layers.purge (remove() does).
   */
  removeInTransaction(reference: string, options: { force?: boolean } = {}): RemoveImageResult {
    const image = this.resolve(reference);
    const result: RemoveImageResult = { untagged: [], deleted: [], doomedLayers: [] };
    const byTag = this.isTagReference(reference, image);
    if (byTag) {
      const tag = normalizeTag(reference);
      this.db.prepare('DELETE FROM image_tags WHERE name = ?').run(tag);
      result.untagged.push(tag);
      if (image.tags.length > 1) return result;
    } else if (image.tags.length > 1 && !options.force) {
      throw new StoreError(
        'ERR_IMAGE_IN_USE',
        `image ${shortId(image.id)} is referenced in several repositories (${image.tags.join(', ')}): remove the tags, or force`,
      );
    }
    const containers = this.containersOf(image.id);
    if (containers.length > 0) {
      if (!options.force) {
        throw new StoreError(
          'ERR_IMAGE_IN_USE',
          `image ${shortId(image.id)} is used by container(s) ${containers.map(shortId).join(', ')}: remove them first, or force`,
        );
      }
      // Forced: the containers keep their layers; the image is forgotten.
      this.db.prepare('DELETE FROM container_images WHERE image = ?').run(image.id);
    }
    if (!byTag) {
      for (const tag of image.tags) result.untagged.push(tag);
    }
    this.db.prepare('DELETE FROM images WHERE id = ?').run(image.id);
    result.deleted.push(image.id);
    if (image.topLayer) result.doomedLayers.push(...this.layers.releaseInTransaction(image.topLayer));
    return result;
  }

  async remove(reference: string, options: { force?: boolean } = {}): Promise<RemoveImageResult> {
    const result = transaction(this.db, () => this.removeInTransaction(reference, options));
    await this.layers.purge(result.doomedLayers);
    return result;
  }

  /** The image's layers, bottom first. */
  layersOf(image: Image): Layer[] {
    return chainIdsOf(image.config).map((chainId) => this.layers.requireLayer(chainId, `layer of image ${shortId(image.id)}`));
  }

  /** Bytes of file content in all the image's layers, as docker's image Size. */
  size(image: Image): number {
    return this.layersOf(image).reduce((sum, layer) => sum + layer.size, 0);
  }

  private byIdPrefix(hex: string, reference: string): Image {
    if (!/^[0-9a-f]{1,64}$/.test(hex)) throw new StoreError('ERR_IMAGE_UNKNOWN', `no such image: ${reference}`);
    const rows = this.db.prepare('SELECT * FROM images WHERE id >= ? AND id < ? LIMIT 2').all(...hexPrefixBounds(`sha256:${hex}`)) as ImageRow[];
    if (rows.length > 1) throw new StoreError('ERR_IMAGE_AMBIGUOUS', `image id prefix "${reference}" matches several images: give more digits`);
    if (!rows[0]) throw new StoreError('ERR_IMAGE_UNKNOWN', `no such image: ${reference}`);
    return this.toImage(rows[0]);
  }

  private byTag(reference: string): Image | undefined {
    let tag: string;
    try {
      tag = normalizeTag(reference);
    } catch {
      return undefined;
    }
    const row = this.db.prepare('SELECT i.* FROM images i JOIN image_tags t ON t.image = i.id WHERE t.name = ?').get(tag) as ImageRow | undefined;
    return row && this.toImage(row);
  }

  private isTagReference(reference: string, image: Image): boolean {
    try {
      return image.tags.includes(normalizeTag(reference));
    } catch {
      return false;
    }
  }

  /** Points a tag at an image; true when it moved from another image. */
  private setTag(tag: string, image: Digest): boolean {
    const previous = this.db.prepare('SELECT image FROM image_tags WHERE name = ?').get(tag) as { image: string } | undefined;
    this.db
      .prepare('INSERT INTO image_tags (name, image, added) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET image = excluded.image, added = excluded.added')
      .run(tag, image, new Date().toISOString());
    return previous !== undefined && previous.image !== image;
  }

  private toImage(
    row: ImageRow,
    tags = this.db.prepare('SELECT name FROM image_tags WHERE image = ? ORDER BY name').pluck().all(row.id) as string[],
    manifests = this.db.prepare('SELECT digest FROM image_manifests WHERE image = ? ORDER BY digest').pluck().all(row.id) as string[],
  ): Image {
    const repositories = [...new Set(tags.map((tag) => tag.slice(0, tag.lastIndexOf(':'))))];
    return {
      id: row.id,
      configBytes: row.config,
      config: parseImageConfig(row.config),
      topLayer: row.top_layer,
      tags,
      digests: repositories.flatMap((repo) => manifests.map((digest) => `${repo}@${digest}`)),
      created: row.created,
      added: row.added,
    };
  }
}
