// The shape of the native addon. Each area's wrapper module exposes a typed,
// validated API over these; nothing else imports the binding directly.
export interface NativeBinding {
  readonly abiVersion: number;

  // mount.cc
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
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
