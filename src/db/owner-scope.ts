import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { OwnerId } from '../auth/owner-id.js';
import type { Database } from './database.js';
import { APP_ROLE, OWNER_SETTING } from './migrations/0004_row_level_security.js';
import type { DB } from './schema.js';

/** Runs `work` in a transaction in which the database shows and accepts only `owner`'s rows. */
export type OwnerScope = <T>(owner: OwnerId, work: (trx: Kysely<DB>) => Promise<T>) => Promise<T>;

/**
 * The request path's only way to the owner-scoped tables. Each call is one transaction that
 * first switches to the `tasks_api_app` role and names the owner, both transaction-local
 * (`set_config(…, true)`), so they end with it and a pooled connection never carries them to
 * the next request. Row-level security then filters every statement, so a query that forgot
 * `where owner_id = …` still sees only the caller's rows.
 *
 * On PostgreSQL the transaction's start and the two settings travel in one round trip: one
 * simple-protocol message `begin; select set_config(…)`, which cannot carry bind parameters, so
 * the owner (a verified token's `sub`) goes in as a literal quoted by pg's `escapeLiteral`. A
 * request then costs two round trips more than its own queries (that one, and the commit)
 * instead of three. PGlite is in-process, where round trips cost nothing: a plain transaction.
 */
export function ownerScope(database: Pick<Database, 'db' | 'kind'>): OwnerScope {
  const { db } = database;
  if (database.kind === 'pglite') {
    return (owner, work) =>
      db.transaction().execute(async (trx) => {
        await sql`select set_config('role', ${APP_ROLE}, true), set_config(${OWNER_SETTING}, ${owner}, true)`.execute(trx);
        return work(trx);
      });
  }
  return (owner, work) =>
    db.connection().execute(async (connection) => {
      const begin = `begin; select set_config('role', '${APP_ROLE}', true), set_config('${OWNER_SETTING}', ${pg.escapeLiteral(owner)}, true)`;
      let result;
      try {
        await sql.raw(begin).execute(connection);
        result = await work(connection);
      } catch (error) {
        await sql`rollback`.execute(connection).catch(() => undefined); // a dead connection is dropped by the pool
        throw error;
      }
      await sql`commit`.execute(connection);
      return result;
    });
}
