// The seed data generator shared by npm run seed and npm run bench: realistic tasks generated
// inside PostgreSQL (INSERT … SELECT over generate_series), a batch of users per statement, the
// same data on every run: each batch is a transaction that seeds random() first (setseed, a value
// of the batch's own), so the data does not depend on which connection runs which batch.
import { sql, type Kysely, type RawBuilder } from 'kysely';
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
  /**
   * 'set' (the default where it can) writes the change history in one statement per batch instead
   * of through tasks' row triggers; 'rows' always fires them. See `setBasedHistory`.
   */
  history?: 'set' | 'rows';
  onProgress?: (tasks: number, users: number) => void;
}

/**
 * The row triggers on tasks the set-based path stands in for: the change history (one row per task
 * in task_changes, the owner's head in change_heads) and the webhook events (none for an owner
 * without an enabled endpoint). A trigger not named here makes the seed fire them all, row by row.
 */
const STOOD_IN_FOR = ['tasks_record_change', 'tasks_webhook_events'];

/**
 * Whether the batches may insert with tasks' row triggers off and write the change history in one
 * statement each (the migration that added the history backfilled it the same way): a session may
 * turn triggers off (session_replication_role, a superuser's setting, for its own session only),
 * tasks has no trigger but the two it stands in for, and no seed user has an enabled webhook
 * endpoint (whose events it would lose). Row by row, the triggers' work was two thirds of a seed:
 * 100,000 tasks in 6.6 s with them, 3.1 s without (1,000,000: 57 s and 30.5 s).
 */
async function setBasedHistory(db: Kysely<DB>): Promise<string | undefined> {
  const {
    rows: [check],
  } = await sql<{ superuser: boolean; triggers: string[]; endpoints: boolean }>`
    select current_setting('is_superuser') = 'on' as superuser,
      array(select tgname::text from pg_trigger where tgrelid = 'tasks'::regclass and not tgisinternal order by 1) as triggers,
      exists (select 1 from webhook_endpoints where enabled and owner_id like 'seed-user-%') as endpoints`.execute(db);
  if (!check!.superuser) return 'the role may not turn triggers off (session_replication_role)';
  const others = check!.triggers.filter((name) => !STOOD_IN_FOR.includes(name));
  if (others.length > 0) return `tasks has triggers the seed does not stand in for: ${others.join(', ')}`;
  if (check!.endpoints) return 'a seed user has an enabled webhook endpoint';
  return undefined;
}

/**
 * Inserts `users × perUser` tasks for `seed-user-1` … `seed-user-N`, then ANALYZEs the table.
 * Resolves to how the history was written: 'set', or 'rows' and why.
 */
export async function seedTasks(
  db: Kysely<DB>,
  { users, perUser, truncate = false, concurrency = 1, history = 'set', onProgress }: SeedOptions,
): Promise<{ history: 'set' } | { history: 'rows'; because: string }> {
  // Attachments go with their tasks; TRUNCATE fires no delete trigger, so their blobs, bytes and usage go too.
  if (truncate)
    await sql`truncate tasks, idempotency_keys, attachments, attachment_blobs, attachment_chunks, attachment_usage`.execute(
      db,
    );
  const size = Math.max(1, Math.floor(50_000 / perUser));
  const batches: { first: number; last: number }[] = [];
  for (let first = 1; first <= users; first += size) batches.push({ first, last: Math.min(users, first + size - 1) });
  const rowsBecause = history === 'rows' ? 'asked for' : await setBasedHistory(db);
  let next = 0;
  let seeded = 0;
  const lane = async () => {
    for (let batch = batches[next++]; batch; batch = batches[next++]) {
      const { first, last } = batch;
      await db.transaction().execute(async (trx) => {
        // The batch's own seed, in (0, 1): the same rows for these users on every run, whatever ran before.
        await sql`select setseed(${first / (users + 1)})`.execute(trx);
        if (rowsBecause !== undefined) await insertBatch(first, last, perUser).execute(trx);
        else {
          await sql`set local session_replication_role = replica`.execute(trx);
          await withHistory(insertBatch(first, last, perUser)).execute(trx);
        }
      });
      seeded += last - first + 1;
      onProgress?.(seeded * perUser, seeded);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  await sql`analyze tasks`.execute(db);
  return rowsBecause === undefined ? { history: 'set' } : { history: 'rows', because: rowsBecause };
}

/**
 * `insert` (into tasks, returning nothing) followed by what tasks_record_change does for each row
 * it inserts: the owner's head moves on by the owner's count, and each task gets the next place in
 * its owner's feed, in the order of created_at.
 */
function withHistory(insert: RawBuilder<unknown>) {
  return sql`
    with inserted as (${insert} returning owner_id, id, version, created_at),
    counted as (select owner_id, count(*) as n from inserted group by owner_id),
    heads as (
      insert into change_heads as h (owner_id, seq) select owner_id, n from counted
        on conflict (owner_id) do update set seq = h.seq + excluded.seq
        returning h.owner_id, h.seq
    )
    insert into task_changes (owner_id, task_id, seq, version)
      select i.owner_id, i.id, heads.seq - counted.n + row_number() over (partition by i.owner_id order by i.created_at, i.id), i.version
      from inserted i join counted using (owner_id) join heads using (owner_id)`;
}

function insertBatch(first: number, last: number, perUser: number): RawBuilder<unknown> {
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
    ) as rows`;
}
