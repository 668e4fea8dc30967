import type { Kysely } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { createTasks } from './migrations/0001_create_tasks.js';
import { listShapesVersionsIdempotency } from './migrations/0002_list_shapes_versions_idempotency.js';
import { builtinIssuer } from './migrations/0003_builtin_issuer.js';
import { rowLevelSecurity } from './migrations/0004_row_level_security.js';
import { attachments } from './migrations/0005_attachments.js';

/** Every migration, in order. Listed here rather than read from disk so bundlers and ESM agree. */
const migrations: Record<string, Migration> = {
  '0001_create_tasks': createTasks,
  '0002_list_shapes_versions_idempotency': listShapesVersionsIdempotency,
  '0003_builtin_issuer': builtinIssuer,
  '0004_row_level_security': rowLevelSecurity,
  '0005_attachments': attachments,
};

/** Brings the schema up to date; safe to run from several processes at once (Kysely takes a lock). */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw new Error('database migration failed', { cause: error });
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
