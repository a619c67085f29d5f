import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { freshFilesystem } from './support.js';
import { Store } from '../lib/store/store.js';
const mode = process.argv[2];
const s = await freshFilesystem('ext4');
const store = await Store.open({ root: join(s.dir, 'root') });
const src = join(s.dir, 'src'); mkdirSync(src); writeFileSync(join(src, 'f'), 'x');
const tar = execFileSync('tar', ['-C', src, '-cf', '-', '.']);
const { layer } = await store.layers.import(Readable.from([tar]), { explicit: true });
if (mode !== 'import') {
  const c = await store.containers.create(layer.chainId);
  if (mode === 'mount') { await store.containers.mount(c.id); }
  await store.containers.remove(c.id);
}
store.close();
for (const fd of readdirSync('/proc/self/fd')) { try { const l = readlinkSync('/proc/self/fd/'+fd); if (l.includes('strata-bench')) console.log(fd, l); } catch {} }
await s.release().then(() => console.log(mode, 'ok'), (e) => console.log(mode, 'release failed', e.code));
