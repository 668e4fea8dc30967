import { sql } from 'kysely';
import type { Database } from '../../src/db/database.js';

/**
 * Holds the tasks table (an exclusive lock, in a transaction of the test's own) until `release`:
 * every request that reads a task waits meanwhile, keeping its place of the load-shedding gate.
 * On PGlite, whose one connection the transaction then holds, every statement waits.
 */
export async function holdTasks(database: Database): Promise<{ release: () => Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const done = database.db.transaction().execute(async (trx) => {
    await sql`lock table tasks in access exclusive mode`.execute(trx);
    locked();
    await released;
  });
  await isLocked;
  return { release: async () => (release(), await done) };
}
