// A separate process that imports one layer into a store: args ROOT FILE|-.
// Prints the ChainID. Used to test crashes and parallel processes.
import { createReadStream } from 'node:fs';

import { Store } from '../../lib/store/store.js';

const [root, file] = process.argv.slice(2);
const store = await Store.open({ root: root! });
const input = file === '-' ? process.stdin : createReadStream(file!);
const { layer } = await store.layers.import(input, { explicit: true });
process.stdout.write(`${layer.chainId}\n`);
store.close();
