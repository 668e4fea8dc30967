import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { ownerIdFromVerifiedSubject } from '../../src/auth/owner-id.js';
import { pruneChanges } from '../../src/changes/prune.js';
import { changeTokens } from '../../src/changes/token.js';
import { ownerScope } from '../../src/db/owner-scope.js';
import { paginate, type components } from '../../packages/client/src/index.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

type Change = components['schemas']['Change'];
type Task = components['schemas']['Task'];

/**
 * GET /changes: each changed task once, as it is now, tombstones for deletions, oldest first;
 * tokens that belong to one user, are checked, and expire with the history they point into.
 */
let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

/** A user of their own: a token, the typed client and the feed's starting token. */
async function user(sub = newUser()) {
  const token = await server.tokenFor(sub);
  const api = server.client(token);
  const { data } = await api.GET('/api/v1/changes');
  return { sub, token, api, start: data!.next_token };
}

async function feed(api: ReturnType<TestServer['client']>, since: string, limit?: number) {
  const { data, error, response } = await api.GET('/api/v1/changes', { params: { query: { since, limit } } });
  return { data, error, status: response.status, headers: response.headers };
}

/** Applies changes to a copy, as a client would. */
function apply(copy: Map<string, Task>, changes: Change[]): void {
  for (const change of changes)
    if (change.op === 'upsert') copy.set(change.task.id, change.task);
    else copy.delete(change.task.id);
}

describe('GET /changes', () => {
  it('answers no changes and a token for now without since, never cached', async () => {
    const { api } = await user();
    const { data, response } = await api.GET('/api/v1/changes');
    expect(data).toEqual({ changes: [], next_token: expect.stringMatching(/^[A-Za-z0-9_-]{20,64}$/), has_more: false });
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('gives each changed task once, as it is now, and a tombstone for a deleted one, oldest first', async () => {
    const { api, start } = await user();
    const a = (await api.POST('/api/v1/tasks', { body: { title: 'a' } })).data!;
    const b = (await api.POST('/api/v1/tasks', { body: { title: 'b', tags: ['x'] } })).data!;
    const patched = (
      await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: a.id } }, body: { completed: true } })
    ).data!;
    expect((await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: b.id } } })).response.status).toBe(
      204,
    );
    const { data } = await feed(api, start);
    expect(data!.has_more).toBe(false);
    expect(data!.changes.map((c) => [c.op, c.task.id])).toEqual([
      ['upsert', a.id],
      ['delete', b.id],
    ]);
    const [upsert, tombstone] = data!.changes;
    expect(upsert!.task).toEqual(patched); // the very same JSON as the API answered, version 2
    expect(tombstone!.task).toEqual({ id: b.id, version: 1, deleted_at: expect.any(String) });
    expect(Date.parse((tombstone!.task as { deleted_at: string }).deleted_at)).toBeGreaterThan(Date.now() - 60_000);
    // Each change's token is the position right after it; the last one is next_token.
    expect(data!.next_token).toBe(tombstone!.token);
    expect((await feed(api, upsert!.token)).data!.changes.map((c) => c.task.id)).toEqual([b.id]);
    expect((await feed(api, data!.next_token)).data).toEqual({
      changes: [],
      next_token: data!.next_token,
      has_more: false,
    });
  });

  it('pages by limit with has_more, and next_token goes on with no gap and no repeat', async () => {
    const { api, start } = await user();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await api.POST('/api/v1/tasks', { body: { title: `t${i}` } })).data!.id);
    const seen: string[] = [];
    let since = start;
    const pages: boolean[] = [];
    for (;;) {
      const { data } = await feed(api, since, 3);
      seen.push(...data!.changes.map((c) => c.task.id));
      pages.push(data!.has_more);
      since = data!.next_token;
      if (!data!.has_more) break;
    }
    expect(seen).toEqual(ids);
    expect(pages).toEqual([true, true, false]);
  });

  it('follows the bootstrap: a token, then the full list, then the feed, to an exact copy', async () => {
    const { api } = await user();
    for (let i = 0; i < 3; i++) await api.POST('/api/v1/tasks', { body: { title: `before ${i}` } });
    const since = (await api.GET('/api/v1/changes')).data!.next_token;
    const copy = new Map<string, Task>();
    for await (const task of paginate(api, '/api/v1/tasks', { params: { query: { limit: 2 } } })) {
      copy.set(task.id, task);
      // A change made while the list is being read: the feed brings it, possibly a second time.
      if (copy.size === 1) {
        await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } }, body: { title: 'during' } });
        await api.POST('/api/v1/tasks', { body: { title: 'during the list' } });
      }
    }
    apply(copy, (await feed(api, since)).data!.changes);
    const now = new Map<string, Task>();
    for await (const task of paginate(api, '/api/v1/tasks')) now.set(task.id, task);
    expect(copy).toEqual(now);
  });

  it('refuses a token of another user with 422 naming since, and never shows another user’s change', async () => {
    const alice = await user();
    const bob = await user();
    await alice.api.POST('/api/v1/tasks', { body: { title: 'alice only' } });
    const { status, error } = await feed(bob.api, alice.start);
    expect(status).toBe(422);
    expect(error).toMatchObject({
      type: 'urn:tasks-api:problem:validation-failed',
      errors: [{ in: 'query', pointer: '/since' }],
    });
    expect((await feed(bob.api, bob.start)).data!.changes).toEqual([]);
  });

  it('refuses an altered or cut token with 422, and a malformed one at the contract', async () => {
    const { api, start } = await user();
    const bytes = Buffer.from(start, 'base64url');
    bytes[8] = bytes[8]! ^ 1; // another position, same signature
    expect((await feed(api, bytes.toString('base64url'))).status).toBe(422);
    expect((await feed(api, start.slice(0, -2))).status).toBe(422);
    expect((await feed(api, `${start}=`)).status).toBe(422);
    expect((await feed(api, 'x'.repeat(65))).status).toBe(422);
  });

  it('answers 410 changes-token-expired for a token below the pruned history, and goes on from a newer one', async () => {
    const { sub, api, start } = await user();
    const gone = (await api.POST('/api/v1/tasks', { body: { title: 'deleted long ago' } })).data!;
    await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: gone.id } } });
    const afterDelete = (await feed(api, start)).data!.next_token;
    const kept = (await api.POST('/api/v1/tasks', { body: { title: 'kept' } })).data!;
    // The tombstone is 31 days old: past the 30 days kept.
    await sql`update task_changes set deleted_at = now() - interval '31 days' where task_id = ${gone.id}`.execute(
      server.database.db,
    );
    expect(await pruneChanges(server.database.db, 30)).toBeGreaterThanOrEqual(1);
    const { status, error } = await feed(api, start);
    expect(status).toBe(410);
    expect(error).toMatchObject({ type: 'urn:tasks-api:problem:changes-token-expired', status: 410 });
    // A token at or after the pruned tombstone lost nothing.
    expect((await feed(api, afterDelete)).data!.changes.map((c) => c.task.id)).toEqual([kept.id]);
    // The live task's change is never pruned, however old: it is the task's state.
    const owner = ownerIdFromVerifiedSubject(sub);
    const rows = await ownerScope(server.database)(owner, (db) =>
      db.selectFrom('task_changes').select(['task_id', 'deleted_at']).execute(),
    );
    expect(rows).toEqual([{ task_id: kept.id, deleted_at: null }]);
  });

  it('answers 410 for a token ahead of the history (a database restored from an older backup)', async () => {
    const { sub, api } = await user();
    const ahead = await changeTokens(server.database.db).sign(ownerIdFromVerifiedSubject(sub), 1_000);
    expect((await feed(api, ahead)).status).toBe(410);
  });

  it('records nothing for an update that changes nothing', async () => {
    const { api, start } = await user();
    const task = (await api.POST('/api/v1/tasks', { body: { title: 'same' } })).data!;
    const first = (await feed(api, start)).data!;
    expect(first.changes).toHaveLength(1);
    await sql`update tasks set title = title where id = ${task.id}`.execute(server.database.db);
    expect((await feed(api, first.next_token)).data!.changes).toEqual([]);
  });
});

describe('the change history under row-level security', () => {
  it('shows an unfiltered select of the heads and the history only the caller’s rows', async () => {
    const alice = await user();
    const bob = await user();
    await alice.api.POST('/api/v1/tasks', { body: { title: 'a' } });
    await bob.api.POST('/api/v1/tasks', { body: { title: 'b' } });
    const asOwner = ownerScope(server.database);
    const owner = ownerIdFromVerifiedSubject(alice.sub);
    const heads = await asOwner(owner, (db) => db.selectFrom('change_heads').select('owner_id').execute());
    const history = await asOwner(owner, (db) => db.selectFrom('task_changes').select('owner_id').execute());
    expect(heads).toEqual([{ owner_id: owner }]);
    expect(history).toEqual([{ owner_id: owner }]);
    // The signing key is the connecting role's alone.
    await expect(asOwner(owner, (db) => db.selectFrom('change_token_keys').select('key').execute())).rejects.toThrow(
      /permission denied/,
    );
  });
});
