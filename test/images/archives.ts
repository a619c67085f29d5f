// Image archives built by hand, so tests control every byte: docker save's
// legacy and blobs forms, OCI layouts, and broken variants of each.
import { buildTar, sha256, type TarEntry } from '../support/tar-builder.js';

export interface TestLayer {
  tar: Buffer;
  diffId: string;
}

/** A layer tar holding the given files. */
export function layer(files: Record<string, string>): TestLayer {
  const tar = buildTar(Object.entries(files).map(([name, data]) => ({ name, data })));
  return { tar, diffId: sha256(tar) };
}

export function config(diffIds: readonly string[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-02T03:04:05Z',
      config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map((_, i) => ({ created: '2024-01-02T03:04:05Z', created_by: `step ${i}` })),
      ...extra,
    }),
  );
}

const hex = (digest: string) => digest.slice('sha256:'.length);

export interface DockerArchiveOptions {
  tags?: string[] | null;
  /** "legacy": <n>/layer.tar and <id>.json; "blobs": Docker 25+'s blobs/sha256/<digest>. */
  form?: 'legacy' | 'blobs';
  configBytes?: Buffer;
  /** Replaces the manifest.json written. */
  manifest?: string;
  /** Replaces the layer paths in manifest.json. */
  layerPaths?: string[];
  configPath?: string;
  /** Entries added to the archive, after the generated ones. */
  extra?: TarEntry[];
  /** Generated entries left out, by name. */
  omit?: string[];
}

export function dockerArchive(layers: readonly TestLayer[], options: DockerArchiveOptions = {}): Buffer {
  const configBytes = options.configBytes ?? config(layers.map((l) => l.diffId));
  const form = options.form ?? 'legacy';
  const configPath = options.configPath ?? (form === 'legacy' ? `${hex(sha256(configBytes))}.json` : `blobs/sha256/${hex(sha256(configBytes))}`);
  const layerPaths = layers.map((l, i) => (form === 'legacy' ? `${i}${'0'.repeat(63)}/layer.tar` : `blobs/sha256/${hex(l.diffId)}`));
  const manifest =
    options.manifest ??
    JSON.stringify([{ Config: configPath, RepoTags: options.tags === undefined ? ['test:1'] : options.tags, Layers: options.layerPaths ?? layerPaths }]);
  const entries: TarEntry[] = [
    ...layers.map((l, i) => ({ name: layerPaths[i]!, data: l.tar })),
    { name: configPath, data: configBytes },
    { name: 'manifest.json', data: manifest },
  ];
  return buildTar([...entries.filter((e) => !options.omit?.includes(e.name)), ...(options.extra ?? [])]);
}

export interface OciOptions {
  refName?: string;
  /** Wraps the manifest in an index of several platforms. */
  multiPlatform?: boolean;
  /** Replaces a blob's bytes (by digest), keeping its name. */
  corrupt?: string;
}

/** An OCI image layout in a tar; layers stored as they are given (plain, gzip or zstd). */
export function ociLayout(layers: ReadonlyArray<{ blob: Buffer; diffId: string; mediaType?: string }>, options: OciOptions = {}): Buffer {
  const blobs = new Map<string, Buffer>();
  const put = (data: Buffer) => {
    const digest = sha256(data);
    blobs.set(digest, data);
    return { digest, size: data.length };
  };
  const configBytes = config(layers.map((l) => l.diffId));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(configBytes) },
      layers: layers.map((l) => ({ mediaType: l.mediaType ?? 'application/vnd.oci.image.layer.v1.tar', ...put(l.blob) })),
    }),
  );
  const manifestDescriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...put(manifest) };
  let top: Record<string, unknown> = { ...manifestDescriptor, platform: { os: 'linux', architecture: 'amd64' } };
  if (options.multiPlatform) {
    const other = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}');
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...put(other), platform: { os: 'linux', architecture: 'arm64' } },
          top,
        ],
      }),
    );
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', ...put(index) };
  }
  if (options.refName) top.annotations = { 'org.opencontainers.image.ref.name': options.refName };
  if (options.corrupt) {
    const original = blobs.get(options.corrupt)!;
    const copy = Buffer.from(original);
    // A byte of the first file's data: still a valid tar, with other content.
    copy.writeUInt8(copy.readUInt8(512) ^ 1, 512);
    blobs.set(options.corrupt, copy);
  }
  const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [top] });
  return buildTar([
    { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
    { name: 'index.json', data: index },
    ...[...blobs].map(([digest, data]) => ({ name: `blobs/sha256/${hex(digest)}`, data })),
  ]);
}
