// The registry of `npm run bench`: each case is a BenchCase (bench/support.ts)
// exported by its own module. Adding one is an import and a line here.
import { build } from './build.js';
import { commit } from './commit.js';
import { container } from './container.js';
import { copyUp, copyUpDevicemapper } from './copy-up.js';
import { imageLoadSave } from './image-load-save.js';
import { layerImport } from './layer-import.js';
import type { BenchCase } from './support.js';
import { systemDf } from './system-df.js';
import { treeCopy } from './tree-copy.js';

export const cases: readonly BenchCase[] = [
  copyUp,
  copyUpDevicemapper,
  imageLoadSave,
  container,
  commit,
  layerImport,
  treeCopy,
  systemDf,
  build,
];
