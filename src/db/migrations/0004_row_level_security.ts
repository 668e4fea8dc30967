import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/** The role every request's transaction runs as (`SET LOCAL ROLE`); it can log in nowhere. */
export const APP_ROLE = 'tasks_api_app';
/** The transaction-local setting that names the request's owner. */
export const OWNER_SETTING = 'tasks_api.owner_id';
const OWNER_TABLES = ['tasks', 'idempotency_keys'];

/**
 * Puts `table` (which has an `owner_id` column) under row-level security: `tasks_api_app` may
 * read and write only the rows of the transaction's owner, and the connecting role (migrations,
 * maintenance) all of them, through a policy of its own since the table is FORCEd.
 */
export async function isolateByOwner(db: Kysely<unknown>, table: string): Promise<void> {
  const t = sql.id(table);
  await sql`grant select, insert, update, delete on ${t} to ${sql.id(APP_ROLE)}`.execute(db);
  await sql`alter table ${t} enable row level security`.execute(db);
  await sql`alter table ${t} force row level security`.execute(db);
  await sql`
    create policy owner_isolation on ${t} to ${sql.id(APP_ROLE)}
      using (owner_id = current_setting(${sql.lit(OWNER_SETTING)}, true))
      with check (owner_id = current_setting(${sql.lit(OWNER_SETTING)}, true))`.execute(db);
  await sql`
    do $$ begin
      execute format('create policy maintenance on %I to %I using (true) with check (true)', ${sql.lit(table)}, current_user);
    end $$`.execute(db);
}

/**
 * Row-level security on the owner-scoped tables, so isolation holds even if a query forgets
 * its `owner_id` filter:
 * - `tasks_api_app` (NOLOGIN, no BYPASSRLS) may read and write them, and its policy shows and
 *   accepts only rows whose owner_id is the transaction's `tasks_api.owner_id`; with no owner set
 *   it sees nothing. Every request's transaction switches to it (see db/owner-scope.ts).
 * - The tables are FORCEd, so even their owner goes through a policy: the role that runs the
 *   migrations gets an explicit one for maintenance (the expired idempotency-key purge, seeding),
 *   which is the only path that ever sees several owners' rows. Superusers bypass RLS whatever
 *   is declared, which is why requests never run as the connecting role.
 * Roles are per cluster: the role is created once and shared by every database of the server.
 */
export const rowLevelSecurity: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      do $$ begin
        create role ${sql.id(APP_ROLE)} nologin;
      exception when duplicate_object then null;
      end $$`.execute(db);
    await sql`grant usage on schema public to ${sql.id(APP_ROLE)}`.execute(db);
    // A connecting role that is not a superuser must be a member to SET ROLE to it.
    await sql`
      do $$ begin
        if not (select rolsuper from pg_roles where rolname = current_user) then
          execute format('grant %I to %I', ${sql.lit(APP_ROLE)}, current_user);
        end if;
      end $$`.execute(db);
    for (const table of OWNER_TABLES) await isolateByOwner(db, table);
  },
  async down(db: Kysely<unknown>) {
    for (const table of OWNER_TABLES) {
      const t = sql.id(table);
      await sql`drop policy maintenance on ${t}`.execute(db);
      await sql`drop policy owner_isolation on ${t}`.execute(db);
      await sql`alter table ${t} no force row level security`.execute(db);
      await sql`alter table ${t} disable row level security`.execute(db);
      await sql`revoke all on ${t} from ${sql.id(APP_ROLE)}`.execute(db);
    }
  },
};
