import { join } from 'node:path';
import { afterEach, describe, expect, it, jest } from '@jest/globals';
// @ts-expect-error: a plain JS reporter, loaded by jest itself
import UntypedReporter from '../helpers/postgres-skips-reporter.js';

/** The part of jest's reporter interface the reporter implements. */
const PostgresSkipsReporter = UntypedReporter as new () => {
  onRunComplete(contexts: Set<unknown>, results: unknown): void;
};

const file = (path: string, statuses: string[]) => ({
  testFilePath: join(process.cwd(), path),
  testResults: statuses.map((status) => ({ status })),
});
const saved = process.env.TEST_DATABASE_URL;
afterEach(() => {
  if (saved === undefined) delete process.env.TEST_DATABASE_URL;
  else process.env.TEST_DATABASE_URL = saved;
});

function report(results: unknown): string {
  let written = '';
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((written += String(chunk)), true));
  try {
    new PostgresSkipsReporter().onRunComplete(new Set(), results);
  } finally {
    spy.mockRestore();
  }
  return written;
}

describe('the PostgreSQL skips reporter', () => {
  const results = {
    testResults: [
      file('tests/server/cluster.process.test.ts', ['pending', 'pending']),
      file('tests/db/prepared-statements.test.ts', ['pending']),
      file('tests/server/config.test.ts', ['pending', 'passed']),
    ],
  };

  it('counts the skipped tests of files that skip without TEST_DATABASE_URL, in one line saying how to run them', () => {
    delete process.env.TEST_DATABASE_URL;
    expect(report(results).trim()).toBe(
      '3 tests need PostgreSQL and were skipped: set TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test to run them (docs/testing.md).',
    );
  });

  it('says nothing when TEST_DATABASE_URL is set or nothing was skipped', () => {
    process.env.TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
    expect(report(results)).toBe('');
    delete process.env.TEST_DATABASE_URL;
    expect(report({ testResults: [file('tests/server/cluster.process.test.ts', ['passed'])] })).toBe('');
  });
});
