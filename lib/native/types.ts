// The shape of the native addon. Each area's wrapper module exposes a typed,
// validated API over these; nothing else imports the binding directly.
export interface NativeBinding {
  readonly abiVersion: number;

  // mount.cc
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  readonly mountConstants: Readonly<Record<string, number>>;

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
    volatile: boolean; userxattr: boolean; maxLowers: number;
    moduleParams: Record<string, string>;
  };
}
