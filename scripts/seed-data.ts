// The seed data generator shared by npm run seed and npm run bench: realistic tasks generated
// inside PostgreSQL (INSERT … SELECT over generate_series), a batch of users per statement, the
// same data on every run: each batch is a transaction that seeds random() first (setseed, a value
// of the batch's own), so the data does not depend on which connection runs which batch.
import { sql, type Kysely } from 'kysely';
import type { DB } from '../src/db/schema.js';

const verbs = [
  'Buy',
  'Call',
  'Email',
  'Fix',
  'Plan',
  'Renew',
  'Review',
  'Write',
  'Book',
  'Clean',
  'Pay',
  'Schedule',
  'Return',
  'Order',
  'Prepare',
];
const things = [
  'passport',
  'dentist',
  'groceries',
  'the car',
  'quarterly report',
  'flights',
  'rent',
  'birthday gift',
  'bike',
  'insurance',
  'slides',
  'garden',
  'taxes',
  'laptop',
  'kitchen sink',
  'hotel',
  'newsletter',
  'team offsite',
];
const tags = [
  'home',
  'work',
  'errands',
  'finance',
  'health',
  'travel',
  'family',
  'admin',
  'urgent',
  'someday',
  'shopping',
  'car',
];
const notes = [
  'Ask for the receipt.',
  'Check the drawer first.',
  'Before Friday.',
  'Compare three offers.',
  'Bring the paperwork.',
  'See last email thread.',
];
const textArray = (list: string[]) => sql`${list}::text[]`;

export interface SeedOptions {
  users: number;
  perUser: number;
  /** Empty tasks, idempotency_keys and the tasks' attachments first. */
  truncate?: boolean;
  /**
   * Batches inserted at once (default 1), each on a connection of its own: the pool must hold that
   * many. Each takes a core of the database server's.
   */
  concurrency?: number;
  onProgress?: (tasks: number, users: number) => void;
}

/** Inserts `users × perUser` tasks for `seed-user-1` … `seed-user-N`, then ANALYZEs the table. */
export async function seedTasks(
  db: Kysely<DB>,
  { users, perUser, truncate = false, concurrency = 1, onProgress }: SeedOptions,
): Promise<void> {
  // Attachments go with their tasks; TRUNCATE fires no delete trigger, so their blobs, bytes and usage go too.
  if (truncate)
    await sql`truncate tasks, idempotency_keys, attachments, attachment_blobs, attachment_chunks, attachment_usage`.execute(
      db,
    );
  const size = Math.max(1, Math.floor(50_000 / perUser));
  const batches: { first: number; last: number }[] = [];
  for (let first = 1; first <= users; first += size) batches.push({ first, last: Math.min(users, first + size - 1) });
  let next = 0;
  let seeded = 0;
  const lane = async () => {
    for (let batch = batches[next++]; batch; batch = batches[next++]) {
      const { first, last } = batch;
      await db.transaction().execute(async (trx) => {
        // The batch's own seed, in (0, 1): the same rows for these users on every run, whatever ran before.
        await sql`select setseed(${first / (users + 1)})`.execute(trx);
        await insertBatch(trx, first, last, perUser);
      });
      seeded += last - first + 1;
      onProgress?.(seeded * perUser, seeded);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  await sql`analyze tasks`.execute(db);
}

function insertBatch(db: Kysely<DB>, first: number, last: number, perUser: number) {
  return sql`
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
}
