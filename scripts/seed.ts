// Fills a PostgreSQL database with realistic tasks, fast, for measuring the list endpoint at scale:
//   npm run seed -- --users 10000 --tasks-per-user 100 [--database-url postgres://…] [--truncate]
// Users are `seed-user-1` … `seed-user-N` (mint their tokens with npm run token -- --sub seed-user-42).
// Rows are generated inside PostgreSQL (INSERT … SELECT over generate_series), a batch of users
// per statement: varied titles, descriptions, tags, priorities, due dates (some none) and
// completion, with created_at spread over the past year; the same data on every run (setseed per
// batch). Two batches at a time (--concurrency), each on a connection of its own. Each task's
// change history is written by the same statement, not row by row by tasks' triggers, where the
// seed can stand in for them (seed-data.ts, setBasedHistory): a third of the time.
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { seedTasks } from './seed-data.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '10000' },
    'tasks-per-user': { type: 'string', default: '100' },
    'database-url': { type: 'string', default: process.env.DATABASE_URL },
    truncate: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: '2' },
  },
});
const users = Number(values.users);
const perUser = Number(values['tasks-per-user']);
const concurrency = Number(values.concurrency);
const url = values['database-url'];
if (!url) {
  process.stderr.write(
    'seed: give --database-url or DATABASE_URL (a PostgreSQL server; PGlite is not what we measure at scale)\n',
  );
  process.exit(1);
}
if ([users, perUser, concurrency].some((n) => !Number.isInteger(n) || n < 1)) {
  process.stderr.write('seed: --users, --tasks-per-user and --concurrency must be positive integers\n');
  process.exit(1);
}

const database = await openDatabase({ url, poolMax: concurrency });
const { db } = database;
const started = performance.now();
try {
  await migrateToLatest(db);
  const seeded = await seedTasks(db, {
    users,
    perUser,
    truncate: values.truncate,
    concurrency,
    onProgress: (tasks, seeded) => {
      if (process.stdout.isTTY)
        process.stdout.write(`\rseed: ${tasks.toLocaleString('en')} tasks for ${seeded.toLocaleString('en')} users`);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from tasks`.execute(db);
  process.stdout.write(
    `\nseed: done in ${seconds.toFixed(1)} s (${Math.round((users * perUser) / seconds).toLocaleString('en')} tasks/s); the table holds ${Number(rows[0]!.n).toLocaleString('en')} tasks; ` +
      (seeded.history === 'set'
        ? 'the history in one statement a batch\n'
        : `the history row by row, through tasks' triggers (${seeded.because})\n`),
  );
} finally {
  await database.close();
}
