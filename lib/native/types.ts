// The shape of the native addon. Each area's wrapper module exposes a typed,
// validated API over these; nothing else imports the binding directly.
export interface NativeBinding {
  readonly abiVersion: number;

  // mount.cc
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  readonly mountConstants: Readonly<Record<string, number>>;
}
