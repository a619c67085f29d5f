// A separate process that builds a Dockerfile and dies (SIGKILL) as soon as a
// RUN step's intermediate container is removed: after the step's layer is
// made, before the build cache records it. args ROOT CONTEXT DOCKERFILE-TEXT.
// Run bundled (see bundle.ts). Used to test the crash window of a build step.
import { build } from '../../lib/build/builder.js';
import { Store } from '../../lib/store/store.js';

const [root, context, dockerfile] = process.argv.slice(2) as [string, string, string];
const store = await Store.open({ root });
await build(store, {
  dockerfile,
  context,
  output: (text) => {
    if (text.toString().startsWith('Removing intermediate container')) process.kill(process.pid, 'SIGKILL');
  },
});
