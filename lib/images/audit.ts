// `strata image audit`: what an image's layers ship that its final root
// filesystem does not show. A file a later layer deletes is only hidden by a
// whiteout: its bytes are still in the lower layer, pulled and stored with the
// image. And secrets (keys, .env files, cloud credentials, tokens) in any
// layer are readable by anyone who has the image, deleted or not.
import { posix } from 'node:path';

import { shortId, type Digest } from '../store/digest.js';
import type { Image } from '../store/images.js';
import type { Store } from '../store/store.js';
import { archivePath, BLOCK, field, numeric, paxRecords } from './tar-index.js';

export interface LayerRef {
  /** 0 for the bottom layer. */
  index: number;
  diffId: Digest;
  /** The history entry that made the layer, when the config has one. */
  createdBy: string;
}

export interface DeletedFile {
  path: string;
  size: number;
  addedIn: LayerRef;
  deletedIn: LayerRef;
}

export interface SecretFinding {
  path: string;
  /** Why it looks like a secret. */
  kind: string;
  layer: LayerRef;
  /** A later layer deleted it: hidden from containers, still in the image. */
  deleted: boolean;
}

export interface AuditReport {
  image: Digest;
  deleted: DeletedFile[];
  /** Bytes of deleted files the image still ships. */
  deletedBytes: number;
  secrets: SecretFinding[];
}

/** Names that hold secrets by convention: [pattern on the path, what it is]. */
const SECRET_NAMES: ReadonlyArray<[RegExp, string]> = [
  [/(^|\/)id_(rsa|dsa|ecdsa|ed25519)$/, 'SSH private key'],
  [/\.(pem|key|p12|pfx)$/, 'private key or certificate bundle'],
  [/(^|\/)\.env(\.[\w.-]+)?$/, '.env file'],
  [/(^|\/)\.aws\/credentials$/, 'AWS credentials'],
  [/(^|\/)\.config\/gcloud\/.*credentials.*\.json$|(^|\/)application_default_credentials\.json$/, 'Google Cloud credentials'],
  [/(^|\/)\.azure\/(accessTokens|msal_token_cache)\.json$/, 'Azure credentials'],
  [/(^|\/)\.docker\/config\.json$/, 'Docker registry credentials'],
  [/(^|\/)\.(netrc|git-credentials|pgpass|pypirc)$/, 'stored passwords'],
  [/(^|\/)\.npmrc$/, 'npm configuration (may hold an auth token)'],
  [/(^|\/)\.kube\/config$/, 'Kubernetes credentials'],
];

/** Content that is a secret wherever it is: [pattern, what it is]. */
const SECRET_CONTENT: ReadonlyArray<[RegExp, string]> = [
  [/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/, 'private key'],
  [/\b(AKIA|ASIA)[0-9A-Z]{16}\b/, 'AWS access key id'],
  [/aws_secret_access_key\s*=/i, 'AWS secret access key'],
  [/"type":\s*"service_account"/, 'Google Cloud service account key'],
  [/\bgh[pousr]_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{40,}/, 'GitHub token'],
  [/\bglpat-[A-Za-z0-9_-]{20}\b/, 'GitLab token'],
  [/\bxox[abprs]-[A-Za-z0-9-]{10,}/, 'Slack token'],
  [/\bsk_live_[A-Za-z0-9]{16,}/, 'Stripe secret key'],
  [/_authToken\s*=/, 'npm auth token'],
];

/** Files larger than this are judged by name only: keys and tokens are small. */
const SCAN_LIMIT = 256 * 1024;

interface TarEntry {
  path: string;
  type: 'file' | 'directory' | 'other';
  size: number;
  /** The file's bytes, for regular files up to SCAN_LIMIT. */
  data?: Buffer;
}

/** Reads a byte stream in pieces without copying what it has already buffered. */
class ByteReader {
  private buffer: Buffer = Buffer.alloc(0);
  private position = 0;
  private ended = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  async read(length: number): Promise<Buffer | null> {
    while (this.buffer.length - this.position < length && !this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
      else {
        this.buffer = Buffer.concat([this.buffer.subarray(this.position), next.value]);
        this.position = 0;
      }
    }
    if (this.buffer.length - this.position < length) return null;
    const piece = this.buffer.subarray(this.position, this.position + length);
    this.position += length;
    return piece;
  }

  async skip(length: number): Promise<void> {
    while (length > 0) {
      const available = this.buffer.length - this.position;
      if (available >= length) {
        this.position += length;
        return;
      }
      length -= available;
      this.position = this.buffer.length;
      const next = await this.source.next();
      if (next.done) return;
      this.buffer = next.value;
      this.position = 0;
    }
  }
}

/** The entries of a layer tar, in order. */
async function* tarEntries(stream: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const reader = new ByteReader(stream[Symbol.asyncIterator]());
  let pax = new Map<string, string>();
  let longName: string | undefined;
  for (;;) {
    const header = await reader.read(BLOCK);
    if (!header || header.every((byte) => byte === 0)) return;
    const type = String.fromCharCode(header[156]!);
    const size = pax.has('size') ? Number(pax.get('size')) : numeric(header, 124, 12, 'size');
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'L') {
      const data = (await reader.read(padded))!.subarray(0, size);
      if (type === 'x') pax = paxRecords(Buffer.from(data));
      else longName = field(data, 0, size);
      continue;
    }
    const prefix = field(header, 345, 155);
    const name = pax.get('path') ?? longName ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
    pax = new Map();
    longName = undefined;
    const kind = type === '0' || type === '\0' || type === '7' ? 'file' : type === '5' ? 'directory' : 'other';
    const entry: TarEntry = { path: archivePath(name) ?? name, type: kind, size: kind === 'file' ? size : 0 };
    if (kind === 'file' && size <= SCAN_LIMIT) {
      entry.data = Buffer.from((await reader.read(padded))!.subarray(0, size));
    } else {
      await reader.skip(padded);
    }
    yield entry;
  }
}

function secretKinds(entry: TarEntry): string[] {
  const kinds = SECRET_NAMES.filter(([pattern]) => pattern.test(entry.path)).map(([, kind]) => kind);
  if (entry.data) {
    const text = entry.data.toString('latin1');
    for (const [pattern, kind] of SECRET_CONTENT) if (pattern.test(text)) kinds.push(kind);
  }
  return [...new Set(kinds)];
}

export async function auditImage(store: Store, image: Image): Promise<AuditReport> {
  const layers = store.images.layersOf(image);
  const makers = (image.config.history ?? []).filter((entry) => !entry.empty_layer).map((entry) => entry.created_by ?? '');
  // What the layers below hold: path -> its size and the layer that added it.
  const present = new Map<string, { size: number; addedIn: LayerRef }>();
  const deleted: DeletedFile[] = [];
  const secrets: SecretFinding[] = [];
  for (const [index, layer] of layers.entries()) {
    const ref: LayerRef = { index, diffId: layer.diffId, createdBy: makers[index] ?? '' };
    const deletions: Array<{ path: string; below: boolean }> = [];
    const added: TarEntry[] = [];
    for await (const entry of tarEntries(store.layers.export(layer.chainId))) {
      const base = posix.basename(entry.path);
      const dir = posix.dirname(entry.path);
      if (base === '.wh..wh..opq') deletions.push({ path: dir === '.' ? '' : dir, below: true });
      else if (base.startsWith('.wh.')) deletions.push({ path: posix.join(dir, base.slice(4)), below: false });
      else added.push(entry);
    }
    // A whiteout hides the path and all below it; an opaque directory what is below it.
    for (const { path, below } of deletions) {
      for (const [existing, info] of present) {
        const hidden = below ? existing.startsWith(path === '' ? '' : `${path}/`) : existing === path || existing.startsWith(`${path}/`);
        if (!hidden) continue;
        present.delete(existing);
        deleted.push({ path: `/${existing}`, size: info.size, addedIn: info.addedIn, deletedIn: ref });
      }
    }
    for (const entry of added) {
      if (entry.type === 'file') {
        present.set(entry.path, { size: entry.size, addedIn: ref });
        for (const kind of secretKinds(entry)) secrets.push({ path: `/${entry.path}`, kind, layer: ref, deleted: false });
      } else {
        present.delete(entry.path);
      }
    }
  }
  // A secret whose file a later layer deleted (or replaced) is still in the image.
  for (const secret of secrets) {
    const now = present.get(secret.path.slice(1));
    secret.deleted = !now || now.addedIn.index !== secret.layer.index;
  }
  return { image: image.id, deleted, deletedBytes: deleted.reduce((sum, d) => sum + d.size, 0), secrets };
}

/** "3 (sha256:1234abcd…)": a layer as the audit table names it. */
export function describeLayer(layer: LayerRef): string {
  return `${layer.index} ${shortId(layer.diffId)}`;
}
