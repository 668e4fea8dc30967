/** Jest on native ESM: TypeScript is transpiled by swc, type-checking is `npm run typecheck`. */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } },
    ],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/tests/**/*.test.ts'],
  // Generous: a hook that starts a server on PGlite took over 20 s on a loaded two-core machine; tests assert behaviour, not speed.
  testTimeout: 60000,
  // The default output, then one line on the PostgreSQL-only tests a run without TEST_DATABASE_URL skipped.
  reporters: ['default', '<rootDir>/tests/helpers/postgres-skips-reporter.js'],
};
