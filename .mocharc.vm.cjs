// Mocha's settings in the 6.1 guest (scripts/vm-test): the whole suite,
// test/vm included, with longer timeouts for the slow emulated kernel.
// "exit": a call stuck in the guest kernel must not keep the run alive.
const base = require('./.mocharc.cjs');
const named = process.argv.slice(2).some((arg) => arg.endsWith('.test.ts'));

module.exports = {
  ...base,
  ...(!named && { spec: ['test/**/*.test.ts'], ignore: [] }),
  exit: true,
  timeout: 180000,
  slow: 2000,
};
