// The shape of the native addon. Each area's wrapper module exposes a typed,
// validated API over these; nothing else imports the binding directly.
// archive.cc: one call in flight per object (else ERR_ARCHIVE_BUSY).
export interface NativeTarApplier {
  write(chunk: Buffer | readonly (Buffer | { path: string; size: number })[]): Promise<void>;
  finish(): Promise<{ entries: number; contentSize: number; tarSplit: Buffer; diffId?: string; checkpoints?: Buffer }>;
  close(): void;
}
export interface NativeTarExporter {
  size(): number;
  /** Several may run at once. state: undefined hashes nothing, null starts at the tar's start. */
  readRange(offset: number, length: number, state?: Buffer | null, final?: boolean): Promise<{ bytes: Buffer; hash?: Buffer }>;
  checkRange(offset: number, length: number): Promise<void>;
  close(): void;
}

export interface NativeDigestChain {
  update(chunk: Buffer): void;
  finish(): { digest: string; checkpoints: Buffer };
}

export interface NativeBinding {
  readonly abiVersion: number;

  // mount.cc
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  isMountRootSync(path: string): boolean | null;
  readonly mountConstants: Readonly<Record<string, number>>;

  // fs.cc
  lgetxattrSync(path: string, name: string): Buffer;
  lsetxattrSync(path: string, name: string, value: Buffer, flags: number): void;
  llistxattrSync(path: string): string[];
  lremovexattrSync(path: string, name: string): void;
  mknodSync(path: string, type: string, mode: number, major: number, minor: number): void;
  whiteoutSync(path: string): void;
  statfs(path: string): Promise<NativeStatfs>;
  statfsSync(path: string): NativeStatfs;
  supportsDType(dir: string): Promise<boolean>;
  readonly fsConstants: Readonly<Record<string, number>>;

  // clone.cc
  cloneFile(src: string, dst: string, mode: string): Promise<{ method: string; bytes: number }>;
  cloneRange(src: string | number, srcOffset: number, dst: string, dstOffset: number, length: number): Promise<void>;
  probeReflink(dir: string): Promise<boolean>;

  // loop.cc
  loopAttach(file: string, options: NativeLoopOptions): Promise<{ device: string; number: number; fd: number }>;
  loopDetach(device: string): Promise<void>;
  loopStatus(device: string): Promise<NativeLoopStatus>;
  loopList(): Promise<NativeLoopStatus[]>;

  // mount_api.cc (every fd returned is close-on-exec; dirfd -100 is AT_FDCWD)
  fsopen(fstype: string): Promise<number>;
  fsconfig(fd: number, cmd: number, key: string | null, value: string | null, aux: number): Promise<void>;
  fsmount(fd: number, attrFlags: number): Promise<number>;
  moveMount(fromDirfd: number, fromPath: string, toDirfd: number, toPath: string, flags: number): Promise<void>;
  openTree(dirfd: number, path: string, flags: number): Promise<number>;
  fspick(dirfd: number, path: string, flags: number): Promise<number>;
  mountSetattr(
    dirfd: number, path: string, flags: number,
    attrSet: number, attrClr: number, propagation: number, usernsFd: number,
  ): Promise<void>;
  readonly mountApiConstants: Readonly<Record<string, number>>;

  // overlay.cc
  mountOverlay(
    target: string, lowers: readonly string[], upper: string | null, work: string | null,
    options: Readonly<Record<string, string | true>>, method: 'auto' | 'lowerdir+' | 'legacy',
  ): Promise<{ method: 'lowerdir+' | 'legacy'; layersByFd: number }>;
  probeOverlayFeatures(): {
    available: boolean; paramsChecked: boolean; lowerdirPlus: boolean; datadirPlus: boolean;
    layersByFd: boolean; metacopy: boolean; index: boolean; redirectDir: boolean;
    volatile: boolean; userxattr: boolean;
    moduleParams: Record<string, string>;
  };
  overlayMaxLowers(): number;

  // archive.cc
  readonly TarApplier: new (dir: string, whiteouts: 'overlay' | 'remove' | 'index', hash?: boolean) => NativeTarApplier;
  readonly TarExporter: new (dir: string, tarSplit: Buffer) => NativeTarExporter;

  // digest.cc
  readonly DigestChain: new () => NativeDigestChain;
  hashSegment(data: Buffer, state: Buffer | null, bytesBefore: number, final: boolean): Promise<Buffer>;

  // tree.cc
  copyTree(src: string, dst: string, threads: number, reflink: boolean): Promise<NativeTreeCopyStats>;
  /** paths and stamps NUL-separated; fields: 7 numbers per entry (see tree.ts). */
  scanTree(root: string): Promise<{ paths: string; stamps: string; fields: Float64Array }>;

  // btrfs.cc
  btrfsCreateSubvolume(path: string): Promise<void>;
  btrfsSnapshot(source: string, dest: string, readOnly: boolean): Promise<void>;
  btrfsDestroySubvolume(path: string): Promise<void>;
  btrfsIsSubvolume(path: string): Promise<boolean>;
  btrfsSubvolumeId(path: string): Promise<number>;
  btrfsGetReadOnly(path: string): Promise<boolean>;
  btrfsSetReadOnly(path: string, readOnly: boolean): Promise<void>;
  btrfsSync(path: string): Promise<void>;
  btrfsQuotaEnable(path: string, enable: boolean): Promise<void>;
  btrfsQgroupCreate(path: string, qgroupId: number): Promise<void>;
  btrfsQgroupLimit(path: string, qgroupId: number, maxReferenced: number, maxExclusive: number): Promise<void>;
  btrfsQuotaRescan(path: string, wait: boolean): Promise<void>;
  btrfsQgroupUsage(path: string, qgroupId: number): Promise<NativeQgroupUsage>;

  // dm.cc
  dmVersion(): Promise<[number, number, number]>;
  dmCreate(name: string, uuid: string): Promise<NativeDmInfo>;
  dmLoadTable(name: string, targets: NativeDmTarget[], readOnly: boolean): Promise<void>;
  dmSuspend(name: string): Promise<NativeDmInfo>;
  dmResume(name: string): Promise<NativeDmInfo>;
  dmRemove(name: string, deferred: boolean): Promise<{ deferred: boolean }>;
  dmStatus(name: string): Promise<NativeDmInfo>;
  dmTableStatus(
    name: string,
    table: boolean,
  ): Promise<{ info: NativeDmInfo; targets: Array<{ start: number; length: number; type: string; text: string }> }>;
  dmMessage(name: string, sector: number, message: string): Promise<string>;
  dmList(): Promise<Array<{ name: string; major: number; minor: number }>>;

  // resolve.cc: an O_PATH fd (close-on-exec) for `path` resolved inside `root`.
  openInTree(root: string, path: string, create: boolean, kind: 'directory' | 'file'): Promise<number>;
}

// tree.cc: what a tree copy did. reflinked + copyRanged + copied === files.
export interface NativeTreeCopyStats {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  specials: number;
  bytes: number;
  reflinked: number;
  copyRanged: number;
  copied: number;
}

// btrfs.cc: a qgroup's usage in bytes; a max of 0 means no limit.
export interface NativeQgroupUsage {
  qgroupId: number;
  referenced: number;
  exclusive: number;
  maxReferenced: number;
  maxExclusive: number;
}

// fs.cc: statfs(2), with the superblock magic named ("unknown" if not known).
export interface NativeStatfs {
  type: number;
  typeName: string;
  blockSize: number;
  blocks: number;
  blocksFree: number;
  blocksAvailable: number;
  files: number;
  filesFree: number;
  nameMax: number;
  flags: number;
}

// loop.cc
export interface NativeLoopOptions {
  readOnly?: boolean;
  autoclear?: boolean;
  directIo?: boolean;
  offset?: number;
  sizeLimit?: number;
  blockSize?: number;
}

export interface NativeLoopStatus {
  device: string;
  number: number;
  backingFile: string;
  offset: number;
  sizeLimit: number;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
  directIo: boolean;

}

// dm.cc: one table line; start and length in 512-byte sectors.
export interface NativeDmTarget {
  start: number;
  length: number;
  type: string;
  params: string;
}

export interface NativeDmInfo {
  name: string;
  uuid: string;
  /** /dev/mapper/<name>, the node dmCreate makes. */
  path: string;
  major: number;
  minor: number;
  openCount: number;
  eventNr: number;
  targetCount: number;
  suspended: boolean;
  readOnly: boolean;
  activeTable: boolean;
  inactiveTable: boolean;
  deferredRemove: boolean;
}
