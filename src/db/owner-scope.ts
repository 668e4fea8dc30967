import { sql, type Kysely, type Transaction } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import { APP_ROLE, OWNER_SETTING } from './migrations/0004_row_level_security.js';
import type { DB } from './schema.js';

/** Runs `work` in a transaction in which the database shows and accepts only `owner`'s rows. */
export type OwnerScope = <T>(owner: OwnerId, work: (trx: Transaction<DB>) => Promise<T>) => Promise<T>;

/**
 * The request path's only way to the owner-scoped tables. Each call is one transaction that
 * first (in one statement) switches to the `tasks_api_app` role and names the owner, both
 * transaction-local (`set_config(…, true)`), so they end with it and a pooled connection never
 * carries them to the next request. Row-level security then filters every statement, so a
 * query that forgot `where owner_id = …` still sees only the caller's rows.
 */
export function ownerScope(db: Kysely<DB>): OwnerScope {
  return (owner, work) =>
    db.transaction().execute(async (trx) => {
      await sql`select set_config('role', ${APP_ROLE}, true), set_config(${OWNER_SETTING}, ${owner}, true)`.execute(trx);
      return work(trx);
    });
}
