// The image configuration (Docker's and OCI's are the same JSON): only the
// fields stratafs relies on are checked; the bytes are kept as they came.
import { isDigest, type Digest } from '../store/digest.js';
import { StoreError } from '../store/errors.js';

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: Record<string, unknown>;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: HistoryEntry[];
  [key: string]: unknown;
}

/** Larger JSON than this is refused rather than parsed: real configs and manifests are kilobytes. */
export const MAX_JSON_BYTES = 8 * 1024 * 1024;

export function invalidImage(message: string): StoreError {
  return new StoreError('ERR_IMAGE_INVALID', message);
}

/** Parses JSON that must be an object, naming `what` in any error. */
export function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  if (bytes.length > MAX_JSON_BYTES) throw invalidImage(`${what} is ${bytes.length} bytes, more than the ${MAX_JSON_BYTES} allowed`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw invalidImage(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidImage(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

export function parseImageConfig(bytes: Buffer, what = 'image config'): ImageConfig {
  const config = parseJsonObject(bytes, what);
  const rootfs = config.rootfs as { type?: unknown; diff_ids?: unknown } | undefined;
  if (typeof rootfs !== 'object' || rootfs === null || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids)) {
    throw invalidImage(`${what} has no rootfs of type "layers" with a diff_ids list`);
  }
  for (const diffId of rootfs.diff_ids) {
    if (typeof diffId !== 'string' || !isDigest(diffId)) throw invalidImage(`${what} lists an invalid DiffID ${JSON.stringify(diffId)}`);
  }
  if (config.history !== undefined && !Array.isArray(config.history)) throw invalidImage(`${what} has a history that is not a list`);
  const history = (config.history as unknown[] | undefined) ?? [];
  const nonEmpty = history.filter((entry) => !(entry as HistoryEntry | null)?.empty_layer).length;
  if (nonEmpty > rootfs.diff_ids.length) {
    throw invalidImage(`${what} has ${nonEmpty} non-empty history entries but only ${rootfs.diff_ids.length} layers`);
  }
  return config as ImageConfig;
}
