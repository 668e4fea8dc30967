import { describe, expect, it } from '@jest/globals';
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely';
import * as rowLevelSecurityMigration from '../../src/db/migrations/0004_row_level_security.js';
import * as webhookTraceContextMigration from '../../src/db/migrations/0009_webhook_trace_context.js';
import { APP_ROLE, OWNER_SETTING, TRACEPARENT_SETTING } from '../../src/db/roles.js';

/**
 * The runtime names of row-level security (db/roles.ts) and the ones migration 0004 wrote into the
 * database are two copies on purpose: a migration is frozen and imports no runtime code. This
 * holds them together, so that a rename on either side fails here instead of every request
 * failing to SET ROLE (or reading an owner setting no policy looks at). No database is needed:
 * the migration runs against a driver that only records the SQL it is given.
 */
async function sqlOfMigration(run: (db: Kysely<unknown>) => Promise<void>): Promise<string> {
  const statements: string[] = [];
  const db = new Kysely<unknown>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => new DummyDriver(),
      createIntrospector: (kysely) => new PostgresIntrospector(kysely),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
    log: (event) => void statements.push(event.query.sql),
  });
  try {
    await run(db);
  } finally {
    await db.destroy();
  }
  return statements.join('\n');
}

describe('row-level security names', () => {
  it('are the same in migration 0004 as in db/roles.ts', () => {
    expect(rowLevelSecurityMigration.APP_ROLE).toBe(APP_ROLE);
    expect(rowLevelSecurityMigration.OWNER_SETTING).toBe(OWNER_SETTING);
  });

  it('are the ones migration 0004 creates the role and the policies with', async () => {
    const up = await sqlOfMigration((db) => rowLevelSecurityMigration.rowLevelSecurity.up(db));
    expect(up).toContain(`create role "${APP_ROLE}" nologin`);
    expect(up).toContain(`to "${APP_ROLE}"`);
    expect(up).toContain(`current_setting('${OWNER_SETTING}', true)`);
  });

  it('are the ones the later migrations isolate their tables with (isolateByOwner)', async () => {
    const policy = await sqlOfMigration((db) => rowLevelSecurityMigration.isolateByOwner(db, 'some_table'));
    expect(policy).toContain(`create policy owner_isolation on "some_table" to "${APP_ROLE}"`);
    expect(policy).toContain(`using (owner_id = current_setting('${OWNER_SETTING}', true))`);
  });

  it('include the trace-context setting, the same in migration 0009 as in db/roles.ts', async () => {
    expect(webhookTraceContextMigration.TRACEPARENT_SETTING).toBe(TRACEPARENT_SETTING);
    const up = await sqlOfMigration((db) => webhookTraceContextMigration.webhookTraceContext.up(db));
    expect(up).toContain(`current_setting('${TRACEPARENT_SETTING}', true)`);
  });
});
