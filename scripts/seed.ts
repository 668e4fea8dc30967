// Fills a PostgreSQL database with realistic tasks, fast, for measuring the list endpoint at scale:
//   npm run seed -- --users 10000 --tasks-per-user 100 [--database-url postgres://…] [--truncate]
// Users are `seed-user-1` … `seed-user-N` (mint their tokens with npm run token -- --sub seed-user-42).
// Rows are generated inside PostgreSQL (INSERT … SELECT over generate_series), a batch of users
// per statement: varied titles, descriptions, tags, priorities, due dates (some none) and
// completion, with created_at spread over the past year; the same data on every run (setseed).
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '10000' },
    'tasks-per-user': { type: 'string', default: '100' },
    'database-url': { type: 'string', default: process.env.DATABASE_URL },
    truncate: { type: 'boolean', default: false },
  },
});
const users = Number(values.users);
const perUser = Number(values['tasks-per-user']);
const url = values['database-url'];
if (!url) {
  process.stderr.write('seed: give --database-url or DATABASE_URL (a PostgreSQL server; PGlite is not what we measure at scale)\n');
  process.exit(1);
}
if (!Number.isInteger(users) || users < 1 || !Number.isInteger(perUser) || perUser < 1) {
  process.stderr.write('seed: --users and --tasks-per-user must be positive integers\n');
  process.exit(1);
}

const verbs = ['Buy', 'Call', 'Email', 'Fix', 'Plan', 'Renew', 'Review', 'Write', 'Book', 'Clean', 'Pay', 'Schedule', 'Return', 'Order', 'Prepare'];
const things = ['passport', 'dentist', 'groceries', 'the car', 'quarterly report', 'flights', 'rent', 'birthday gift', 'bike', 'insurance', 'slides', 'garden', 'taxes', 'laptop', 'kitchen sink', 'hotel', 'newsletter', 'team offsite'];
const tags = ['home', 'work', 'errands', 'finance', 'health', 'travel', 'family', 'admin', 'urgent', 'someday', 'shopping', 'car'];
const notes = ['Ask for the receipt.', 'Check the drawer first.', 'Before Friday.', 'Compare three offers.', 'Bring the paperwork.', 'See last email thread.'];
const textArray = (list: string[]) => sql`${list}::text[]`;

// One connection, so that setseed() makes the whole data set the same on every run.
const database = await openDatabase({ url, poolMax: 1 });
const { db } = database;
const started = performance.now();
try {
  await migrateToLatest(db);
  await sql`select setseed(0.42)`.execute(db);
  if (values.truncate) await sql`truncate tasks, idempotency_keys`.execute(db);
  const batch = Math.max(1, Math.floor(50_000 / perUser));
  for (let first = 1; first <= users; first += batch) {
    const last = Math.min(users, first + batch - 1);
    await sql`
      insert into tasks (owner_id, title, description, completed, priority, due_at, tags, created_at, updated_at, completed_at)
      select
        'seed-user-' || u,
        (${textArray(verbs)})[1 + floor(random() * ${verbs.length})::int] || ' ' || (${textArray(things)})[1 + floor(random() * ${things.length})::int],
        case when random() < 0.5 then null else (${textArray(notes)})[1 + floor(random() * ${notes.length})::int] end,
        done,
        (array['low', 'medium', 'medium', 'high'])[1 + floor(random() * 4)::int],
        case when random() < 0.3 then null else date_trunc('hour', now()) + ((random() * 120 - 30) * interval '1 day') end,
        array(select t from unnest(${textArray(tags)}) as t where random() < 0.15 + 0 * n),
        created,
        created,
        case when done then created + random() * interval '10 days' end
      from (
        select u, n, random() < 0.3 as done, date_trunc('milliseconds', now() - random() * interval '365 days') as created
        from generate_series(${first}::int, ${last}::int) as u, generate_series(1, ${perUser}::int) as n
      ) as rows`.execute(db);
    if (process.stdout.isTTY) process.stdout.write(`\rseed: ${(last * perUser).toLocaleString('en')} tasks for ${last.toLocaleString('en')} users`);
  }
  await sql`analyze tasks`.execute(db);
  const seconds = (performance.now() - started) / 1000;
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from tasks`.execute(db);
  process.stdout.write(`\nseed: done in ${seconds.toFixed(1)} s (${Math.round((users * perUser) / seconds).toLocaleString('en')} tasks/s); the table holds ${Number(rows[0]!.n).toLocaleString('en')} tasks\n`);
} finally {
  await database.close();
}
