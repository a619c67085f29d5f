// overlay2: each layer's own files in <root>/overlay2/<cache-id>/diff, stacked
// by the kernel's overlayfs; whiteouts are 0/0 character devices.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { ContainerDriver, WritableLayout } from './driver.js';

export class Overlay2Driver implements ContainerDriver {
  readonly name = 'overlay2';
  readonly whiteouts = 'overlay' as const;
  readonly home: string;

  constructor(root: string) {
    this.home = join(root, 'overlay2');
  }

  layerPath(cacheId: string): string {
    return join(this.home, cacheId);
  }

  layerDir(cacheId: string): string {
    return join(this.home, cacheId, 'diff');
  }

  async createLayer(cacheId: string): Promise<string> {
    const dir = this.layerDir(cacheId);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    return dir;
  }

  writable(cacheId: string): WritableLayout {
    const dir = this.layerPath(cacheId);
    return { upper: join(dir, 'diff'), work: join(dir, 'work'), merged: join(dir, 'merged') };
  }

  async createWritable(cacheId: string): Promise<WritableLayout> {
    const layout = this.writable(cacheId);
    await mkdir(layout.upper, { recursive: true, mode: 0o755 });
    await mkdir(layout.work, { mode: 0o700 });
    await mkdir(layout.merged, { mode: 0o700 });
    return layout;
  }

  async removeLayer(cacheId: string): Promise<void> {
    await rm(this.layerPath(cacheId), { recursive: true, force: true });
  }
}
