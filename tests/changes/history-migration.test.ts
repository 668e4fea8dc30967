import { describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import type { Migration } from 'kysely/migration';
import { openDatabase } from '../../src/db/database.js';
import { migrateToLatest, migrations } from '../../src/db/migrate.js';
import { changeHistory } from '../../src/db/migrations/0010_change_history.js';
import { scratchDatabase } from '../helpers/server.js';

const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

/** The migrations before the change history. */
const before: Record<string, Migration> = Object.fromEntries(
  Object.entries(migrations).filter(([name]) => name < '0010'),
);

onPostgres('migration 0010 (the change history) on a database with tasks', () => {
  it('gives every existing task a place in its owner’s feed, in creation order, and goes down and up again', async () => {
    const scratch = await scratchDatabase({ empty: true });
    const database = await openDatabase({ url: scratch.url!, poolMax: 2 });
    try {
      await migrateToLatest(database.db, before);
      await sql`
        insert into tasks (owner_id, title, created_at)
          select 'owner-' || (n % 2), 'task ' || n, now() - make_interval(secs => 100 - n) from generate_series(1, 7) n`.execute(
        database.db,
      );
      expect(await migrateToLatest(database.db)).toEqual(['0010_change_history']);
      const { rows } = await sql<{ owner_id: string; title: string; seq: string }>`
        select c.owner_id, t.title, c.seq::text from task_changes c join tasks t on t.id = c.task_id
         order by c.owner_id, c.seq`.execute(database.db);
      expect(rows.map((r) => [r.owner_id, r.title, r.seq])).toEqual([
        ['owner-0', 'task 2', '1'],
        ['owner-0', 'task 4', '2'],
        ['owner-0', 'task 6', '3'],
        ['owner-1', 'task 1', '1'],
        ['owner-1', 'task 3', '2'],
        ['owner-1', 'task 5', '3'],
        ['owner-1', 'task 7', '4'],
      ]);
      const heads = await sql<{ owner_id: string; seq: string }>`
        select owner_id, seq::text from change_heads order by owner_id`.execute(database.db);
      expect(heads.rows).toEqual([
        { owner_id: 'owner-0', seq: '3' },
        { owner_id: 'owner-1', seq: '4' },
      ]);
      // The next change goes on from the head.
      await sql`update tasks set title = 'renamed' where title = 'task 1'`.execute(database.db);
      const renamed = await sql<{ seq: string }>`
        select c.seq::text from task_changes c join tasks t on t.id = c.task_id where t.title = 'renamed'`.execute(
        database.db,
      );
      expect(renamed.rows).toEqual([{ seq: '5' }]);
      await changeHistory.down!(database.db);
      await changeHistory.up(database.db);
      expect(
        (await sql<{ n: string }>`select count(*)::text as n from task_changes`.execute(database.db)).rows,
      ).toEqual([{ n: '7' }]);
    } finally {
      await database.close();
      await scratch.drop();
    }
  }, 60_000);
});
