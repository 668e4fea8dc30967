import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { ownerIdFromVerifiedSubject, type OwnerId } from '../../src/auth/owner-id.js';
import { ownerScope, type OwnerScope } from '../../src/db/owner-scope.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

/**
 * The database's own isolation: queries that "forget" the owner filter, run through the handle
 * every request uses (ownerScope), still see and change only the caller's rows.
 */
let server: TestServer;
let asOwner: OwnerScope;
let alice: OwnerId;
let bob: OwnerId;

beforeAll(async () => {
  server = await startServer();
  asOwner = ownerScope(server.database);
  [alice, bob] = [ownerIdFromVerifiedSubject(newUser()), ownerIdFromVerifiedSubject(newUser())];
  for (const [owner, titles] of [
    [alice, ['a1', 'a2']],
    [bob, ['b1', 'b2', 'b3']],
  ] as const) {
    const client = server.client(await server.tokenFor(owner));
    for (const title of titles)
      expect(
        (await client.POST('/api/v1/tasks', { body: { title }, headers: { 'Idempotency-Key': `k-${title}` } })).response
          .status,
      ).toBe(201);
  }
});
afterAll(() => server.close());

const titlesOf = (rows: { title: string }[]) => rows.map((row) => row.title).sort();

describe('row-level security on the request path', () => {
  it('shows an unfiltered select only the caller’s tasks and idempotency keys', async () => {
    const seen = await asOwner(alice, (trx) => trx.selectFrom('tasks').select(['title', 'owner_id']).execute());
    expect(titlesOf(seen)).toEqual(['a1', 'a2']);
    expect(new Set(seen.map((row) => row.owner_id))).toEqual(new Set([alice]));
    const keys = await asOwner(bob, (trx) => trx.selectFrom('idempotency_keys').select('owner_id').execute());
    expect(keys.length).toBe(3);
    expect(new Set(keys.map((row) => row.owner_id))).toEqual(new Set([bob]));
  });

  it('lets an unfiltered update or delete touch only the caller’s rows', async () => {
    const updated = await asOwner(alice, (trx) =>
      trx.updateTable('tasks').set({ description: 'touched' }).executeTakeFirst(),
    );
    expect(Number(updated.numUpdatedRows)).toBe(2);
    const bobs = await server.database.db
      .selectFrom('tasks')
      .select('description')
      .where('owner_id', '=', bob)
      .execute();
    expect(bobs.map((row) => row.description)).toEqual([null, null, null]);
    const deleted = await asOwner(bob, (trx) => trx.deleteFrom('idempotency_keys').executeTakeFirst());
    expect(Number(deleted.numDeletedRows)).toBe(3);
    expect(
      (await server.database.db.selectFrom('idempotency_keys').select('key').where('owner_id', '=', alice).execute())
        .length,
    ).toBe(2);
  });

  it('shows an unfiltered select of the attachment tables only the caller’s files and bytes', async () => {
    const [carol, dave] = [ownerIdFromVerifiedSubject(newUser()), ownerIdFromVerifiedSubject(newUser())];
    for (const [owner, text] of [
      [carol, 'carol file'],
      [dave, 'dave file'],
    ] as const) {
      const client = server.client(await server.tokenFor(owner));
      const { data: task } = await client.POST('/api/v1/tasks', { body: { title: `with ${text}` } });
      const upload = await fetch(`${server.url}/api/v1/tasks/${task!.id}/attachments`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${await server.tokenFor(owner)}`, 'Content-Type': 'text/plain' },
        body: text,
      });
      expect(upload.status).toBe(201);
    }
    for (const table of ['attachments', 'attachment_blobs', 'attachment_chunks', 'attachment_usage'] as const) {
      const owners = await asOwner(carol, (trx) => trx.selectFrom(table).select('owner_id').execute());
      expect([table, new Set(owners.map((row) => row.owner_id))]).toEqual([table, new Set([carol])]);
    }
    const bytes = await asOwner(dave, (trx) => trx.selectFrom('attachment_chunks').select('data').execute());
    expect(bytes.map((row) => Buffer.from(row.data).toString())).toEqual(['dave file']);
  });

  it('refuses to write a row for another owner', async () => {
    await expect(
      asOwner(alice, (trx) => trx.insertInto('tasks').values({ owner_id: bob, title: 'planted' }).execute()),
    ).rejects.toThrow(/row-level security/);
    await expect(asOwner(alice, (trx) => trx.updateTable('tasks').set({ owner_id: bob }).execute())).rejects.toThrow(
      /row-level security/,
    );
  });

  it('shows nothing when no owner is named, and the tables are forced', async () => {
    const rows = await server.database.db.transaction().execute(async (trx) => {
      await sql`set local role tasks_api_app`.execute(trx);
      return trx.selectFrom('tasks').select('id').execute();
    });
    expect(rows).toEqual([]);
    const { rows: tables } = await sql<{ relname: string; relrowsecurity: boolean; relforcerowsecurity: boolean }>`
      select relname, relrowsecurity, relforcerowsecurity from pg_class
      where relname in ('tasks', 'idempotency_keys', 'attachments', 'attachment_blobs', 'attachment_chunks', 'attachment_usage', 'webhook_endpoints', 'webhook_deliveries') order by relname`.execute(
      server.database.db,
    );
    expect(tables).toEqual(
      [
        'attachment_blobs',
        'attachment_chunks',
        'attachment_usage',
        'attachments',
        'idempotency_keys',
        'tasks',
        'webhook_deliveries',
        'webhook_endpoints',
      ].map((relname) => ({ relname, relrowsecurity: true, relforcerowsecurity: true })),
    );
  });

  it('runs each statement as tasks_api_app with the owner named, and leaves nothing behind on the pooled connection', async () => {
    const inside = await asOwner(alice, (db) =>
      sql<{
        role: string;
        owner: string;
      }>`select current_user as role, current_setting('tasks_api.owner_id', true) as owner`.execute(db),
    );
    expect(inside.rows).toEqual([{ role: 'tasks_api_app', owner: alice }]);
    await asOwner.transaction(bob, (trx) => trx.selectFrom('tasks').select('id').execute());
    // Every pooled connection, after the scope: back to the connecting role, no owner named.
    const states = await Promise.all(
      Array.from({ length: 5 }, () =>
        sql<{
          role: string;
          owner: string | null;
        }>`select current_user as role, current_setting('tasks_api.owner_id', true) as owner`.execute(
          server.database.db,
        ),
      ),
    );
    for (const { rows } of states) {
      expect(rows[0]!.role).not.toBe('tasks_api_app');
      expect(rows[0]!.owner ?? '').toBe('');
    }
  });

  it('keeps the API’s answers unchanged: each user lists only their own tasks', async () => {
    const page = await server.client(await server.tokenFor(bob)).GET('/api/v1/tasks');
    expect(titlesOf(page.data!.items)).toEqual(['b1', 'b2', 'b3']);
  });

  it('shows an unfiltered select of the webhook tables only the caller’s endpoints and deliveries, and keeps events of a rolled-back change out', async () => {
    const [erin, frank] = [ownerIdFromVerifiedSubject(newUser()), ownerIdFromVerifiedSubject(newUser())];
    for (const owner of [erin, frank]) {
      const client = server.client(await server.tokenFor(owner));
      // A loopback port nothing listens on: no worker runs here, and none may call out.
      expect(
        (await client.POST('/api/v1/webhooks', { body: { url: 'http://127.0.0.1:9/hook', events: ['task.created'] } }))
          .response.status,
      ).toBe(201);
      expect((await client.POST('/api/v1/tasks', { body: { title: 'hooked' } })).response.status).toBe(201);
    }
    const endpoints = await asOwner(erin, (db) => db.selectFrom('webhook_endpoints').select('owner_id').execute());
    const deliveries = await asOwner(erin, (db) =>
      db.selectFrom('webhook_deliveries').select(['owner_id', 'payload']).execute(),
    );
    expect(endpoints.map((row) => row.owner_id)).toEqual([erin]);
    expect(deliveries.map((row) => row.owner_id)).toEqual([erin]);
    // The outbox is written by the change's own transaction: rolled back, no event.
    await expect(
      asOwner.transaction(erin, async (trx) => {
        await trx.insertInto('tasks').values({ owner_id: erin, title: 'never committed' }).execute();
        expect((await trx.selectFrom('webhook_deliveries').select('id').execute()).length).toBe(2);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect((await asOwner(erin, (db) => db.selectFrom('webhook_deliveries').select('id').execute())).length).toBe(1);
    // And another owner's endpoint cannot be written to through the scope.
    const frankOwns = await asOwner(frank, (db) =>
      db.selectFrom('webhook_endpoints').select('id').executeTakeFirstOrThrow(),
    );
    const hijack = await asOwner(erin, (db) =>
      db
        .updateTable('webhook_endpoints')
        .set({ url: 'https://evil.example/' })
        .where('id', '=', frankOwns.id)
        .executeTakeFirst(),
    );
    expect(Number(hijack.numUpdatedRows)).toBe(0);
  });
});
