import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

/**
 * A jest reporter that says, in one line at the end of a run without TEST_DATABASE_URL, how many
 * tests were skipped because they need a PostgreSQL server (those in files that skip on
 * `TEST_DATABASE_URL ? … : ….skip`), and how to run them. Jest's own "skipped" counts every
 * skipped test (`numPendingTests`); when some were skipped for another reason (an `it.skip`), the
 * line says how many of jest's those are and names the files they are in, so the two counts agree.
 */
export default class PostgresSkipsReporter {
  onRunComplete(_contexts, results) {
    if (process.env.TEST_DATABASE_URL) return;
    let skipped = 0;
    const otherFiles = [];
    for (const file of results.testResults) {
      const pending = file.testResults.filter((test) => test.status === 'pending').length;
      if (pending === 0) continue;
      let source;
      try {
        source = readFileSync(file.testFilePath, 'utf8');
      } catch {
        source = '';
      }
      if (/TEST_DATABASE_URL\s*\?/.test(source)) {
        skipped += pending;
      } else {
        otherFiles.push(relative(process.cwd(), file.testFilePath));
      }
    }
    if (skipped === 0) return;
    // The rest of jest's own figure (its summary's "N skipped"), so the two always agree.
    const others = (typeof results.numPendingTests === 'number' ? results.numPendingTests : skipped) - skipped;
    const how = 'set TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test to run them (docs/testing.md)';
    process.stderr.write(
      others === 0
        ? `\n${skipped} test${skipped === 1 ? ' needs' : 's need'} PostgreSQL and ${skipped === 1 ? 'was' : 'were'} skipped: ${how}.\n`
        : `\n${skipped} of the ${skipped + others} skipped tests need PostgreSQL: ${how}; the other ${others} ${others === 1 ? 'is' : 'are'} skipped for another reason${otherFiles.length > 0 ? ` (${otherFiles.join(', ')})` : ''}.\n`,
    );
  }
}
