import { sql } from 'kysely';
import { describe, expect, it } from '@jest/globals';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { scratchDatabase } from '../helpers/server.js';

// Several processes on one PostgreSQL server (PGlite has one process and no other sessions).
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

/** Advisory locks anyone holds in `db`'s database: none once every migration is over. */
async function advisoryLocks(db: Database['db']) {
  const { rows } = await sql<{ pid: number; state: string | null }>`
    select l.pid, a.state from pg_locks l left join pg_stat_activity a using (pid)
    where l.locktype = 'advisory' and l.database = (select oid from pg_database where datname = current_database())`.execute(
    db,
  );
  return rows;
}

onPostgres('migrations', () => {
  // Through a pooler in transaction mode, server connections outlive the processes: a lock left on
  // one is held by no one and makes every later start wait until its statement timeout.
  it('run from six processes at once, three times, on a fresh database: all succeed and no lock is left behind', async () => {
    const scratch = await scratchDatabase({ empty: true });
    const admin = await openDatabase({ url: scratch.url!, poolMax: 1 });
    try {
      for (let round = 0; round < 3; round += 1) {
        const processes = await Promise.all(
          Array.from({ length: 6 }, () => openDatabase({ url: scratch.url!, poolMax: 2 })),
        );
        try {
          const applied = (await Promise.all(processes.map((p) => migrateToLatest(p.db)))).flat();
          // Each migration is applied once, by whichever process comes first; later rounds find none to apply.
          if (round === 0) expect(applied.length).toBeGreaterThan(0);
          else expect(applied).toEqual([]);
          expect(new Set(applied).size).toBe(applied.length);
        } finally {
          await Promise.all(processes.map((p) => p.close()));
        }
        expect(await advisoryLocks(admin.db)).toEqual([]);
      }
    } finally {
      await admin.close();
      await scratch.drop();
    }
  }, 60_000);

  it('a migration that fails rolls back everything and leaves no lock behind: the next run is not kept waiting', async () => {
    const scratch = await scratchDatabase({ empty: true });
    const database = await openDatabase({
      url: scratch.url!,
      poolMax: 2,
      statementTimeoutMs: 2000,
      queryTimeoutMs: 3000,
    });
    try {
      const failing = {
        '0001_table': {
          up: async (db: Database['db']) => void (await sql`create table migration_probe (id int)`.execute(db)),
        },
        '0002_fails': { up: async (db: Database['db']) => void (await sql`select 1 / 0`.execute(db)) },
      };
      await expect(migrateToLatest(database.db, failing)).rejects.toThrow('database migration failed');
      expect(await advisoryLocks(database.db)).toEqual([]);
      expect(
        (await sql<{ t: string | null }>`select to_regclass('migration_probe')::text as t`.execute(database.db)).rows,
      ).toEqual([{ t: null }]);
      // Under a 2 s statement timeout: a lock left on any server connection would make this fail.
      expect((await migrateToLatest(database.db)).length).toBeGreaterThan(0);
    } finally {
      await database.close();
      await scratch.drop();
    }
  }, 30_000);
});
