import { PostgresAdapter, PostgresDialect, sql, type DialectAdapter, type Kysely } from 'kysely';

/** Kysely's own migration lock key, so that a process of an older release still excludes a newer one. */
const MIGRATION_LOCK_KEY = 3853314791062309107n;

/** Takes the migration lock until the end of `db`'s transaction (a session holding it gets it again at once). */
export async function takeMigrationLock<DB>(db: Kysely<DB>): Promise<void> {
  await sql`select pg_advisory_xact_lock(${sql.lit(MIGRATION_LOCK_KEY)})`.execute(db);
}

/**
 * Kysely's PostgreSQL adapter whose migration lock is the transaction-level one migrateToLatest
 * holds (taken again here, which a session holding it always gets at once), and never a
 * session-level lock: the stock one would be taken inside the migration transaction and, should
 * a migration fail, could not be released in the aborted transaction, and would outlive it on a
 * pooled server connection.
 */
class TransactionLockAdapter extends PostgresAdapter {
  override async acquireMigrationLock(db: Kysely<unknown>): Promise<void> {
    await takeMigrationLock(db);
  }

  override async releaseMigrationLock(): Promise<void> {
    // Released by the transaction's end.
  }
}

/** Kysely's PostgreSQL dialect with the migration lock above. */
export class MigrationSafePostgresDialect extends PostgresDialect {
  override createAdapter(): DialectAdapter {
    return new TransactionLockAdapter();
  }
}
