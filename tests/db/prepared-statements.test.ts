import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { ownerIdFromVerifiedSubject, type OwnerId } from '../../src/auth/owner-id.js';
import type { Database } from '../../src/db/database.js';
import { ownerScope } from '../../src/db/owner-scope.js';
import { newUser, testDatabase } from '../helpers/server.js';

// Named statements exist on PostgreSQL only (PGlite is in-process and runs transactions).
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

/**
 * The owner scope's named statements, on one connection (pool of 1) so that every statement meets
 * what the ones before it left: the plan PostgreSQL keeps for a named statement must never carry
 * one owner's rows to another, and a failure the first time a statement runs must not leave the
 * connection believing it is prepared.
 */
onPostgres('named statements in the owner scope', () => {
  let database: Database;
  let alice: OwnerId;
  let bob: OwnerId;
  const named = !(process.env.TEST_DATABASE_PREPARED_STATEMENTS === 'off');

  beforeAll(async () => {
    database = await testDatabase(undefined, { poolMax: 1 });
    [alice, bob] = [ownerIdFromVerifiedSubject(newUser()), ownerIdFromVerifiedSubject(newUser())];
    const rows = [
      ...['a1', 'a2'].map((title) => ({ owner_id: alice, title })),
      ...['b1', 'b2', 'b3'].map((title) => ({ owner_id: bob, title })),
    ];
    await database.db.insertInto('tasks').values(rows).execute();
  });
  afterAll(() => database.close());

  const asOwner = () => ownerScope(database);
  const titles = (owner: OwnerId) =>
    asOwner()(owner, (db) => db.selectFrom('tasks').select('title').orderBy('title').execute()).then((rows) =>
      rows.map((row) => row.title),
    );
  const preparedHere = () =>
    asOwner()(alice, (db) =>
      sql<{ name: string }>`select name from pg_prepared_statements where name like 'tasks_api_%'`.execute(db),
    ).then((r) => r.rows.map((row) => row.name));

  it('prepares each statement once per connection (unless DATABASE_PREPARED_STATEMENTS=off), and one Kysely serves every owner', async () => {
    expect(asOwner()).toBe(ownerScope(database));
    await titles(alice);
    await titles(alice);
    const before = await preparedHere();
    if (!named) return expect(before).toEqual([]);
    expect(before).toContain('tasks_api_scope'); // the scope statement itself
    expect(before.length).toBeGreaterThanOrEqual(2);
    await titles(bob);
    expect(await preparedHere()).toEqual(before); // same text, same statement: nothing new prepared
  });

  it('keeps every owner to their own rows through the same prepared statement, forty times over', async () => {
    for (let i = 0; i < 20; i += 1) {
      // More than five executions: PostgreSQL may switch to a generic plan, which must stay filtered.
      expect(await titles(alice)).toEqual(['a1', 'a2']);
      expect(await titles(bob)).toEqual(['b1', 'b2', 'b3']);
    }
  });

  it('recovers when a statement fails the first time it runs: the error is PostgreSQL’s, the connection goes on', async () => {
    const tooLong = 'x'.repeat(300); // the title column's check refuses it on execution, after a successful Parse
    const insert = (title: string) =>
      asOwner()(alice, (db) =>
        db.insertInto('tasks').values({ owner_id: alice, title }).returning('title').executeTakeFirstOrThrow(),
      );
    await expect(insert(tooLong)).rejects.toMatchObject({ code: expect.stringMatching(/^23/) });
    expect(await insert('after a failure')).toEqual({ title: 'after a failure' });
    // A statement PostgreSQL cannot parse at all is not taken for prepared: run again, it fails
    // the same way (not with "prepared statement does not exist").
    for (let i = 0; i < 2; i += 1) {
      await expect(asOwner()(alice, (db) => sql`select no_such_column from tasks`.execute(db))).rejects.toMatchObject({
        code: '42703',
      });
    }
    expect(await titles(alice)).toEqual(['a1', 'a2', 'after a failure']);
  });

  it('refuses a query that carries no owner instead of running it unscoped', async () => {
    // A view's queries are tagged when they are built; one compiled elsewhere has no owner.
    const compiled = database.db.selectFrom('tasks').select('title').compile();
    await expect(asOwner()(alice, (db) => db.executeQuery(compiled))).rejects.toThrow('without an owner');
  });
});
