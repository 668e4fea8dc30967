import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { takeMigrationLock } from './migration-lock.js';
import { createTasks } from './migrations/0001_create_tasks.js';
import { listShapesVersionsIdempotency } from './migrations/0002_list_shapes_versions_idempotency.js';
import { builtinIssuer } from './migrations/0003_builtin_issuer.js';
import { rowLevelSecurity } from './migrations/0004_row_level_security.js';
import { attachments } from './migrations/0005_attachments.js';
import { webhooks } from './migrations/0006_webhooks.js';
import { webhookDueRetentionClaims } from './migrations/0007_webhook_due_retention_claims.js';
import { webhookCapacity } from './migrations/0008_webhook_capacity.js';
import { webhookTraceContext } from './migrations/0009_webhook_trace_context.js';
import { changeHistory } from './migrations/0010_change_history.js';

/** Every migration, in order. Listed here rather than read from disk so bundlers and ESM agree. */
export const migrations: Record<string, Migration> = {
  '0001_create_tasks': createTasks,
  '0002_list_shapes_versions_idempotency': listShapesVersionsIdempotency,
  '0003_builtin_issuer': builtinIssuer,
  '0004_row_level_security': rowLevelSecurity,
  '0005_attachments': attachments,
  '0006_webhooks': webhooks,
  '0007_webhook_due_retention_claims': webhookDueRetentionClaims,
  '0008_webhook_capacity': webhookCapacity,
  '0009_webhook_trace_context': webhookTraceContext,
  '0010_change_history': changeHistory,
};

/**
 * The role in DATABASE_URL may not create tables where the migrations must: on a database not
 * yet migrated, Kysely's migrator would fail on its own table and then report a different error
 * (its check runs in the transaction the refusal aborted), so this is asked first.
 */
export class MigrationNotPermitted extends Error {
  constructor(
    readonly role: string,
    readonly schema: string,
  ) {
    super(
      `The database role "${role}" may not create tables in schema "${schema}", so the migrations cannot run: grant it (GRANT CREATE ON SCHEMA ${schema} TO "${role}"; since PostgreSQL 15 no role has it by default) or put the database owner's role in DATABASE_URL.`,
    );
    this.name = 'MigrationNotPermitted';
  }
}

/**
 * Brings the schema up to date; safe to run from several processes at once, on a direct
 * connection or through a pooler in transaction mode. Everything happens in one transaction that
 * first takes a transaction-level advisory lock: the migration tables are checked and created,
 * the state read and every pending migration applied under it, and its COMMIT or ROLLBACK
 * releases it. Kysely's own lock is session-level, taken and released by statements of their own
 * outside the migration transaction; through a transaction-mode pooler each of those can run on a
 * different server connection, and the lock stayed behind on one of them, held by no one, so that
 * every later start waited on it until its statement timeout and failed. `all` is for the tests.
 */
export async function migrateToLatest<DB>(
  db: Kysely<DB>,
  all: Record<string, Migration> = migrations,
): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    await takeMigrationLock(trx);
    const {
      rows: [state],
    } = await sql<{ role: string; schema: string; can_create: boolean; migrated: boolean }>`
      select current_user as role, current_schema() as schema,
             has_schema_privilege(current_schema(), 'CREATE') as can_create,
             to_regclass('kysely_migration') is not null as migrated`.execute(trx);
    if (state !== undefined && !state.migrated && !state.can_create)
      throw new MigrationNotPermitted(state.role, state.schema);
    const migrator = new Migrator({ db: trx, provider: { getMigrations: async () => all } });
    const { error, results } = await migrator.migrateToLatest();
    if (error) throw new Error('database migration failed', { cause: error });
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  });
}
