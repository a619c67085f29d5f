// The shape of the native addon. Each area's wrapper module exposes a typed,
// validated API over these; nothing else imports the binding directly.
// archive.cc: one call in flight per object (else ERR_ARCHIVE_BUSY).
export interface NativeTarApplier {
  write(chunk: Buffer | readonly Buffer[]): Promise<void>;
  finish(): Promise<{ entries: number; contentSize: number; tarSplit: Buffer }>;
}
export interface NativeTarExporter {
  /** The next bytes of the tar (at most maxBytes), or null at the end. */
  read(maxBytes: number): Promise<Buffer | null>;
}

export interface NativeBinding {
  readonly abiVersion: number;

  // mount.cc
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  readonly mountConstants: Readonly<Record<string, number>>;

  // archive.cc
  readonly TarApplier: new (dir: string, whiteouts: 'overlay' | 'remove') => NativeTarApplier;
  readonly TarExporter: new (dir: string, tarSplit: Buffer) => NativeTarExporter;
}
