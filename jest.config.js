import { availableParallelism } from 'node:os';

/** Jest on native ESM: TypeScript is transpiled by swc, type-checking is `npm run typecheck`. */
export default {
  // jest's node environment, sharing PGlite's compiled WebAssembly between the files of a worker.
  testEnvironment: '<rootDir>/tests/helpers/environment.js',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } },
    ],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/tests/**/*.test.ts'],
  // The migrations run once per run, and every test server starts from a copy (see helpers/templates.ts).
  globalSetup: '<rootDir>/tests/helpers/global-setup.js',
  globalTeardown: '<rootDir>/tests/helpers/global-teardown.js',
  // A test server starts from the migrated template in about a second, so hooks fit well inside
  // this; the few tests that wait on purpose for longer (process restarts, retry schedules) say so.
  testTimeout: 20000,
  // Half as many workers again as cores (three on two). Two workers left the cores idle 15-16 % of
  // the run, while both waited on sockets, timers or child processes; a third fills that time (3 %
  // idle). On this 2-core machine, alternating: 281 s and 250 s with three, 312 s and 295 s with
  // two (PostgreSQL: 250 s and 289 s). jest's own percentage stops at 100 %. The capacity tests'
  // victims stayed far inside their bounds (at most 731 ms against 2 s, 338 ms against 1 s).
  maxWorkers: Math.max(2, Math.ceil(availableParallelism() * 1.5)),
  // A worker is replaced once a test file leaves its heap above this. jest makes every file's
  // modules afresh and the old ones are never all freed: a worker's heap grew by 10–20 MB a file,
  // to 300 MB after some 15, and every collection walked all of it. A new worker costs about a second
  // (a process, jest, PGlite's WebAssembly compiled again). tasks/, contract/ and http/ (28 files):
  // 172 s and 179 s of CPU without, 165 s and 152 s with.
  workerIdleMemoryLimit: '200MB',
  // The default output, then one line on the PostgreSQL-only tests a run without TEST_DATABASE_URL skipped.
  reporters: ['default', '<rootDir>/tests/helpers/postgres-skips-reporter.js'],
};
