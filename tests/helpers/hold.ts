import { sql } from 'kysely';
import type { TestServer } from './server.js';

/**
 * Holds the tasks table (an exclusive lock, in a transaction of the test's own) until `release`:
 * every request that reads a task waits meanwhile, keeping its place of the load-shedding gate.
 * On PGlite, whose one connection the transaction then holds, every statement waits. On
 * PostgreSQL the server must have a database of its own (`startServer({ ownDatabase: true })`):
 * the lock would stall every test file writing to the shared one, and deadlock with any of them
 * holding a transaction open until a statement timeout broke it.
 */
export async function holdTasks(
  server: Pick<TestServer, 'database' | 'postgres'>,
): Promise<{ release: () => Promise<void> }> {
  if (server.postgres?.shared)
    throw new Error('holdTasks locks the whole tasks table: start the server with { ownDatabase: true }');
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const done = server.database.db.transaction().execute(async (trx) => {
    await sql`lock table tasks in access exclusive mode`.execute(trx);
    locked();
    await released;
  });
  await isLocked;
  return { release: async () => (release(), await done) };
}
