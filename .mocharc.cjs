// Mocha's settings for the host suite. Test files named on the command line
// (`npm test -- test/store/layers.test.ts`) replace the default set, which
// mocha would otherwise run as well.
const named = process.argv.slice(2).some((arg) => arg.endsWith('.test.ts'));

module.exports = {
  ...(!named && { spec: ['test/**/*.test.ts'], ignore: ['test/vm/**'] }),
  'node-option': ['import=tsx'],
  require: ['test/support/hooks.ts'],
  reporter: 'test/support/reporter.cjs',
  'forbid-only': true,
  'fail-zero': true,
  timeout: 60000,
  slow: 500,
};
