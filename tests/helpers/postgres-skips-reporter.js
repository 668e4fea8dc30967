import { readFileSync } from 'node:fs';

/**
 * A jest reporter that says, in one line at the end of a run without TEST_DATABASE_URL, how many
 * tests were skipped because they need a PostgreSQL server (those in files that skip on
 * `TEST_DATABASE_URL ? … : ….skip`), and how to run them.
 */
export default class PostgresSkipsReporter {
  onRunComplete(_contexts, results) {
    if (process.env.TEST_DATABASE_URL) return;
    let skipped = 0;
    for (const file of results.testResults) {
      let source;
      try {
        source = readFileSync(file.testFilePath, 'utf8');
      } catch {
        continue;
      }
      if (!/TEST_DATABASE_URL\s*\?/.test(source)) continue;
      skipped += file.testResults.filter((test) => test.status === 'pending').length;
    }
    if (skipped === 0) return;
    process.stderr.write(
      `\n${skipped} test${skipped === 1 ? ' needs' : 's need'} PostgreSQL and ${skipped === 1 ? 'was' : 'were'} skipped: set TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test to run them (README, "Test it").\n`,
    );
  }
}
