// `npm run seed` (scripts/seed-data.ts, also the benches' seed) writes each task's change history
// in one statement per batch, with tasks' row triggers off, unless it cannot stand in for them.
// What it writes must be what the triggers write: one feed place per task, each owner's places
// 1…n in a row and its head at n, continuing from a head already there, with the same tasks.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../../src/db/database.js';
import type { DB } from '../../src/db/schema.js';
import { seedTasks } from '../../scripts/seed-data.js';
import { scratchDatabase, testDatabase } from '../helpers/server.js';

interface Seeded {
  /** Per owner: its tasks, its feed places in order of place, and its head. */
  owners: Record<string, { tasks: number; places: number[]; head: number }>;
  /** Tasks without exactly one history row of their version, or history rows without a task. */
  unmatched: number;
  /** The tasks' content, independent of ids, order and the time of the run (the dates follow now()). */
  content: string[];
  deliveries: number;
}

async function seeded(db: Kysely<DB>): Promise<Seeded> {
  const owners: Seeded['owners'] = {};
  const tasks = await sql<{ owner_id: string; n: number }>`
    select owner_id, count(*)::int as n from tasks group by owner_id`.execute(db);
  for (const { owner_id, n } of tasks.rows) owners[owner_id] = { tasks: n, places: [], head: 0 };
  const places = await sql<{ owner_id: string; seq: string }>`
    select owner_id, seq::text from task_changes order by owner_id, seq`.execute(db);
  for (const { owner_id, seq } of places.rows) owners[owner_id]?.places.push(Number(seq));
  const heads = await sql<{ owner_id: string; seq: string }>`select owner_id, seq::text from change_heads`.execute(db);
  for (const { owner_id, seq } of heads.rows) if (owners[owner_id]) owners[owner_id].head = Number(seq);
  const unmatched = await sql<{ n: number }>`
    select count(*)::int as n from tasks t full join task_changes c on c.task_id = t.id and c.owner_id = t.owner_id
    where t.id is null or c.task_id is null or c.version <> t.version or c.deleted_at is not null`.execute(db);
  const content = await sql<{ row: string }>`
    select concat_ws('|', owner_id, title, description, completed, priority, due_at is null, tags) as row
    from tasks order by 1`.execute(db);
  const deliveries = await sql<{ n: number }>`select count(*)::int as n from webhook_deliveries`.execute(db);
  return {
    owners,
    unmatched: unmatched.rows[0]!.n,
    content: content.rows.map((r) => r.row),
    deliveries: deliveries.rows[0]!.n,
  };
}

/** A fresh migrated database (PGlite, or a copy of the PostgreSQL template), closed and dropped after. */
async function freshDatabase(): Promise<Database & { drop(): Promise<void> }> {
  const scratch = await scratchDatabase();
  const database = await testDatabase(scratch.url);
  return Object.assign(database, {
    async drop() {
      await database.close();
      await scratch.drop();
    },
  });
}

/** Seeds 3 users × 4 tasks, then 5 users × 4 (users 1-3 get four more, after a head): as the two paths do it. */
async function seedTwice(db: Kysely<DB>, history: 'set' | 'rows') {
  const paths = [
    await seedTasks(db, { users: 3, perUser: 4, history }),
    await seedTasks(db, { users: 5, perUser: 4, history, concurrency: 2 }),
  ];
  expect(paths.map((path) => path.history)).toEqual([history, history]);
  return seeded(db);
}

describe('npm run seed: the change history', () => {
  const databases: (Database & { drop(): Promise<void> })[] = [];
  let bySet: Seeded;
  let byRows: Seeded;
  beforeAll(async () => {
    databases.push(await freshDatabase(), await freshDatabase());
    [bySet, byRows] = await Promise.all([seedTwice(databases[0]!.db, 'set'), seedTwice(databases[1]!.db, 'rows')]);
  });
  afterAll(async () => {
    for (const database of databases) await database.drop();
  });

  it('gives every task one place in its owner’s feed, 1…n in a row, and the head n, continuing from a head', () => {
    expect(Object.keys(bySet.owners).sort()).toEqual([
      'seed-user-1',
      'seed-user-2',
      'seed-user-3',
      'seed-user-4',
      'seed-user-5',
    ]);
    for (const [owner, { tasks, places, head }] of Object.entries(bySet.owners)) {
      const expected = owner <= 'seed-user-3' ? 8 : 4;
      expect({ owner, tasks, places, head }).toEqual({
        owner,
        tasks: expected,
        places: Array.from({ length: expected }, (_, i) => i + 1),
        head: expected,
      });
    }
    expect(bySet.unmatched).toBe(0);
  });

  it('writes what the row triggers write, for the same tasks', () => {
    expect(byRows.unmatched).toBe(0);
    expect(bySet.owners).toEqual(byRows.owners);
    expect(bySet.content).toEqual(byRows.content);
    expect(bySet.content).toHaveLength(32);
  });

  it('fires the row triggers when a seed user has an enabled webhook endpoint, whose events it would lose', async () => {
    const database = await freshDatabase();
    databases.push(database);
    await sql`
      insert into webhook_endpoints (owner_id, url, events, secret)
      values ('seed-user-2', 'https://hooks.example.test/tasks', array['task.created'], 'not-a-real-secret')`.execute(
      database.db,
    );
    expect(await seedTasks(database.db, { users: 3, perUser: 4 })).toEqual({
      history: 'rows',
      because: 'a seed user has an enabled webhook endpoint',
    });
    const result = await seeded(database.db);
    expect(result.unmatched).toBe(0);
    expect(result.owners['seed-user-2']).toEqual({ tasks: 4, places: [1, 2, 3, 4], head: 4 });
    // seed-user-2's four creations, each a task.created for its endpoint; nobody else's.
    expect(result.deliveries).toBe(4);
  });
});
