// The public API of stratafs.
export { Store, DEFAULT_ROOT, DEFAULT_DRIVER, type StoreOptions } from './store/store.js';
export type { Layer, ImportOptions, ImportResult } from './store/layers.js';
export type { Container, ContainerOptions, ContainerSize } from './store/containers.js';
export { StoreError, type StoreErrorCode } from './store/errors.js';
export { diskUsage, type DiskUsage, type UsageCategory, type ImageUsage, type ContainerUsage, type VolumeUsage, type BuildCacheRecord } from './store/usage.js';
export { pruneContainers, pruneImages, pruneSystem, type PruneFilters, type ContainerPruneResult, type ImagePruneResult, type SystemPruneResult } from './store/prune.js';
export { chainId, isDigest, parseDigest, sha256, shortId, type Digest } from './store/digest.js';
export { applyLayerArchive, type ApplyOptions, type ApplyResult, type FileRange, type LayerInput, type WhiteoutMode } from './archive/apply.js';
export { exportLayerArchive } from './archive/export.js';
export { ArchiveError } from './archive/errors.js';
export type { Change, ChangeKind } from './archive/changes.js';
export { collectHostInfo, type HostInfo, type DriverAvailability } from './system/info.js';
export { build, BuildError, type BuildOptions, type BuildResult } from './build/builder.js';
export { BuildCache, buildCacheUsage, type BuildCacheUsage } from './build/cache.js';
export { auditImage, type AuditReport } from './images/audit.js';

// The native primitives, for tools that build their own storage on them.
export * as mounts from './native/mount.js';
export * as mountApi from './native/mount-api.js';
export * as overlay from './native/overlay.js';
export * as fs from './native/fs.js';
export * as clone from './native/clone.js';
export * as loop from './native/loop.js';
