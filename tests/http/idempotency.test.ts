import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import pg from 'pg';
import type { TasksClient } from '../../packages/client/src/index.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

const body = { title: 'Pay rent', priority: 'high' as const, tags: ['home'] };

async function user(on = server): Promise<{ api: TasksClient; sub: string }> {
  const sub = newUser();
  return { api: on.client(await on.tokenFor(sub)), sub };
}

const post = (api: TasksClient, key: string, payload: object = body) =>
  api.POST('/api/v1/tasks', { params: { header: { 'Idempotency-Key': key } }, body: payload as typeof body });

const count = async (api: TasksClient) =>
  (await api.GET('/api/v1/tasks', { params: { query: { limit: 100 } } })).data!.items.length;

describe('POST /api/v1/tasks with Idempotency-Key', () => {
  it('replays the first response (status, body, Location, ETag) and creates one task only', async () => {
    const { api } = await user();
    const first = await post(api, 'key-1');
    const again = await post(api, 'key-1');
    expect(first.response.status).toBe(201);
    expect(first.response.headers.get('idempotent-replayed')).toBeNull();
    expect(again.response.status).toBe(201);
    expect(again.response.headers.get('idempotent-replayed')).toBe('true');
    expect(again.data).toEqual(first.data);
    expect(again.response.headers.get('location')).toBe(first.response.headers.get('location'));
    expect(again.response.headers.get('etag')).toBe('"1"');
    expect(await count(api)).toBe(1);
  });

  it('treats the same body with its fields in another order as the same request', async () => {
    const { api } = await user();
    const first = await post(api, 'key-order', { title: 'a', tags: ['x'], priority: 'low' });
    const again = await post(api, 'key-order', { priority: 'low', tags: ['x'], title: 'a' });
    expect(again.data!.id).toBe(first.data!.id);
    expect(await count(api)).toBe(1);
  });

  it('answers 422 naming the header when the key comes back with a different body', async () => {
    const { api } = await user();
    await post(api, 'key-2');
    const { response, error } = await post(api, 'key-2', { ...body, title: 'Pay the rent' });
    expect(response.status).toBe(422);
    expect(error!.errors).toEqual([
      { in: 'header', pointer: '/Idempotency-Key', detail: 'was already used with a different request body' },
    ]);
    expect(await count(api)).toBe(1);
  });

  it('keys are per user: the same key from someone else is their own request', async () => {
    const alice = await user();
    const bob = await user();
    const a = await post(alice.api, 'shared-key');
    const b = await post(bob.api, 'shared-key');
    expect(b.response.headers.get('idempotent-replayed')).toBeNull();
    expect(b.data!.id).not.toBe(a.data!.id);
  });

  it('a key older than 24 hours is forgotten: the request runs again', async () => {
    const { api, sub } = await user();
    const first = await post(api, 'old-key');
    await sql`update idempotency_keys set created_at = now() - interval '25 hours' where owner_id = ${sub}`.execute(
      server.database.db,
    );
    const again = await post(api, 'old-key');
    expect(again.response.headers.get('idempotent-replayed')).toBeNull();
    expect(again.data!.id).not.toBe(first.data!.id);
    expect(await count(api)).toBe(2);
  });

  it('a duplicate of a request still in flight gets 409 with Retry-After; an abandoned claim is taken over', async () => {
    const { api, sub } = await user();
    // A claim exactly as an in-flight request leaves it (same body, so the hash matches).
    const first = await post(api, 'probe');
    const hash = (
      await sql<{ request_hash: string }>`select request_hash from idempotency_keys where owner_id = ${sub}`.execute(
        server.database.db,
      )
    ).rows[0]!.request_hash;
    await sql`insert into idempotency_keys (owner_id, key, request_hash, state) values (${sub}, 'in-flight', ${hash}, 'in_flight')`.execute(
      server.database.db,
    );
    const duplicate = await post(api, 'in-flight');
    expect(duplicate.response.status).toBe(409);
    expect(duplicate.response.headers.get('retry-after')).toBe('1');
    expect(duplicate.error).toMatchObject({ type: 'urn:tasks-api:problem:idempotency-key-in-use' });
    expect(
      server.logs.some(
        (line) =>
          line.message === 'idempotency conflict' && line.level === 'warn' && line.code === 'IDEMPOTENCY_KEY_IN_USE',
      ),
    ).toBe(true);
    // Its process died a minute ago: the next attempt takes the key over and creates the task.
    await sql`update idempotency_keys set created_at = now() - interval '2 minutes' where owner_id = ${sub} and key = 'in-flight'`.execute(
      server.database.db,
    );
    const retried = await post(api, 'in-flight');
    expect(retried.response.status).toBe(201);
    expect(retried.data!.id).not.toBe(first.data!.id);
  });
});

// PGlite runs one statement at a time, which would hide the race; this needs the real server.
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;
onPostgres('concurrent duplicates on PostgreSQL', () => {
  // A database of its own: the lock below is on the whole tasks table (see startServer's ownDatabase).
  let own: TestServer;
  beforeAll(async () => {
    own = await startServer({ ownDatabase: true });
  });
  afterAll(() => own.close());

  it('while the first request is blocked mid-flight, its duplicate gets 409; afterwards it replays', async () => {
    const { api } = await user(own);
    // Another session holds a lock that blocks inserts into tasks, so the first request claims
    // its key (committed) and then waits inside its transaction.
    const blocker = new pg.Client({ connectionString: own.postgres!.url });
    await blocker.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table tasks in share mode');
      const first = post(api, 'race');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const duplicates = await Promise.all([post(api, 'race'), post(api, 'race'), post(api, 'race')]);
      expect(duplicates.map((d) => d.response.status)).toEqual([409, 409, 409]);
      await blocker.query('rollback');
      const original = await first;
      expect(original.response.status).toBe(201);
      const replay = await post(api, 'race');
      expect([replay.response.status, replay.data!.id, replay.response.headers.get('idempotent-replayed')]).toEqual([
        201,
        original.data!.id,
        'true',
      ]);
      expect(await count(api)).toBe(1);
    } finally {
      await blocker.end();
    }
  });

  it('of many simultaneous identical requests exactly one creates the task', async () => {
    const { api } = await user();
    const results = await Promise.all(Array.from({ length: 12 }, () => post(api, 'stampede')));
    const created = results.filter(
      (r) => r.response.status === 201 && r.response.headers.get('idempotent-replayed') === null,
    );
    const others = results.filter((r) => !created.includes(r)).map((r) => r.response.status);
    expect(created).toHaveLength(1);
    expect(others.every((status) => status === 409 || status === 201)).toBe(true);
    expect(await count(api)).toBe(1);
  });
});
