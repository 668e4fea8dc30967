import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Tasks, owned by a token subject. Timestamps are kept to the millisecond so that a value read
 * into a JavaScript Date (and a cursor made from it) compares equal to the stored one.
 */
export const createTasks: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('tasks')
      .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
      .addColumn('owner_id', 'text', (c) => c.notNull().check(sql`length(owner_id) between 1 and 255`))
      .addColumn('title', 'text', (c) => c.notNull().check(sql`length(title) between 1 and 200`))
      .addColumn('description', 'text', (c) => c.check(sql`length(description) <= 1000`))
      .addColumn('completed', 'boolean', (c) => c.notNull().defaultTo(false))
      .addColumn('priority', 'text', (c) =>
        c
          .notNull()
          .defaultTo('medium')
          .check(sql`priority in ('low', 'medium', 'high')`),
      )
      .addColumn('due_at', sql`timestamptz(3)`)
      .addColumn('tags', sql`text[]`, (c) =>
        c
          .notNull()
          .defaultTo(sql`'{}'`)
          .check(sql`cardinality(tags) <= 20`),
      )
      .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('completed_at', sql`timestamptz(3)`)
      .execute();
    // Newest-first listing of one owner's tasks, all of them or by completion.
    await sql`create index tasks_owner_created_idx on tasks (owner_id, created_at desc, id desc)`.execute(db);
    await sql`create index tasks_owner_completed_created_idx on tasks (owner_id, completed, created_at desc, id desc)`.execute(
      db,
    );
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('tasks').execute();
  },
};
