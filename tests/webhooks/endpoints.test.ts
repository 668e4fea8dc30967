import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TasksClient } from '../../packages/client/src/index.js';
import { MAX_WEBHOOKS } from '../../src/webhooks/webhooks.service.js';
import { buildTask } from '../helpers/factories.js';
import { scratchDatabase, startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let production: TestServer;
let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

// A database of its own on PostgreSQL: the endpoints here point at hosts that must never be
// called, and a worker of another test file on a shared database would try.
beforeAll(async () => {
  scratch = await scratchDatabase();
  server = await startServer({ databaseUrl: scratch.url });
  production = await startServer({ databaseUrl: scratch.url, webhooks: { requireHttps: true, allowedAddresses: [] } });
});
afterAll(async () => {
  await server.close();
  await production.close();
  await scratch.drop();
});

const RECEIVER = 'https://hooks.example.com/tasks';
const user = async (on: TestServer = server): Promise<TasksClient> => on.client(await on.tokenFor());
const create = (
  api: TasksClient,
  body: {
    url?: string;
    events?: ('task.created' | 'task.updated' | 'task.completed' | 'task.deleted' | 'task.due')[];
    description?: string | null;
    enabled?: boolean;
  } = {},
) => api.POST('/api/v1/webhooks', { body: { url: RECEIVER, events: ['task.created'], ...body } });
const path = (webhookId: string) => ({ params: { path: { webhookId } } });

describe('POST /api/v1/webhooks', () => {
  it('creates an endpoint and shows its signing secret once, with Location', async () => {
    const api = await user();
    const { data, response } = await create(api, { events: ['task.created', 'task.due'], description: 'CRM sync' });
    expect(response.status).toBe(201);
    expect(data).toMatchObject({
      url: RECEIVER,
      events: ['task.created', 'task.due'],
      description: 'CRM sync',
      enabled: true,
      disabled_reason: null,
    });
    expect(data!.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(response.headers.get('Location')).toBe(`/api/v1/webhooks/${data!.id}`);
    const read = await api.GET('/api/v1/webhooks/{webhookId}', path(data!.id));
    expect(read.data).not.toHaveProperty('secret');
    expect(read.data).toEqual(Object.fromEntries(Object.entries(data!).filter(([key]) => key !== 'secret')));
  });

  it('keeps each event type once when the list repeats one', async () => {
    const { data, response } = await create(await user(), { events: ['task.created', 'task.created'] as never });
    // uniqueItems in the contract: a repeated event is refused before any handler.
    expect(response.status).toBe(422);
    expect(data).toBeUndefined();
  });

  it.each([
    ['an event type that does not exist', { events: ['task.exploded'] }, '/events/0'],
    ['no events', { events: [] }, '/events'],
    ['a URL that is not http(s)', { url: 'ftp://hooks.example.com/x' }, '/url'],
    ['a relative URL', { url: '/hooks' }, '/url'],
  ])('refuses %s with 422 naming the field', async (_what, body, pointer) => {
    const { error, response } = await create(await user(), body as never);
    expect(response.status).toBe(422);
    expect(error).toMatchObject({ type: 'urn:tasks-api:problem:validation-failed' });
    expect((error as { errors: { pointer: string }[] }).errors.map((e) => e.pointer)).toContain(pointer);
  });

  describe('destinations the server will not call are refused at registration (SSRF)', () => {
    it.each([
      'https://10.0.0.1/hook',
      'https://192.168.1.20/hook',
      'https://172.16.0.1/hook',
      'https://169.254.169.254/latest/meta-data',
      'https://[fd00:ec2::254]/latest',
      'https://[::ffff:169.254.169.254]/x',
      'https://100.64.0.1/hook',
      'https://0.0.0.0/hook',
      'https://[fe80::1]/hook',
      'https://224.0.0.1/hook',
      'http://hooks.example.com/plain-http',
      'https://user:pass@hooks.example.com/x',
    ])('%s → 422 on /url', async (url) => {
      const { error, response } = await create(await user(), { url });
      expect(response.status).toBe(422);
      expect((error as { errors: { pointer: string }[] }).errors).toEqual([
        expect.objectContaining({ in: 'body', pointer: '/url' }),
      ]);
    });

    it('allows http to localhost in development, and nothing but https in production', async () => {
      expect((await create(await user(), { url: 'http://localhost:4000/hook' })).response.status).toBe(201);
      expect((await create(await user(), { url: 'http://127.0.0.1:4000/hook' })).response.status).toBe(201);
      for (const url of [
        'http://localhost:4000/hook',
        'https://127.0.0.1/hook',
        'https://[::1]/hook',
        'https://localhost/hook',
        'https://localhost./hook',
        'https://api.localhost./hook',
        'https://127.0.0.1./hook',
        'https://2130706433/hook',
        'https://0x7f.1/hook',
        'https://[::ffff:7f00:1]/hook',
        'http://hooks.example.com/x',
      ]) {
        const { response } = await create(await user(production), { url });
        expect([url, response.status]).toEqual([url, 422]);
      }
      expect((await create(await user(production))).response.status).toBe(201);
    });
  });

  it(`allows ${MAX_WEBHOOKS} endpoints per user, then answers 409`, async () => {
    const api = await user();
    for (let i = 0; i < MAX_WEBHOOKS; i++) expect((await create(api)).response.status).toBe(201);
    const { error, response } = await create(api);
    expect(response.status).toBe(409);
    expect(error).toMatchObject({ type: 'urn:tasks-api:problem:webhook-limit-reached', status: 409 });
  });
});

describe('listing, changing and deleting endpoints', () => {
  it('pages the caller’s endpoints oldest first, following next_cursor and Link', async () => {
    const api = await user();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(api, { description: `n${i}` })).data!.id);
    const first = await api.GET('/api/v1/webhooks', { params: { query: { limit: 2 } } });
    expect(first.data!.items.map((w) => w.id)).toEqual(ids.slice(0, 2));
    expect(first.response.headers.get('Link')).toContain('rel="next"');
    const seen = [...first.data!.items.map((w) => w.id)];
    let cursor = first.data!.next_cursor;
    while (cursor) {
      const page = await api.GET('/api/v1/webhooks', { params: { query: { limit: 2, cursor } } });
      seen.push(...page.data!.items.map((w) => w.id));
      cursor = page.data!.next_cursor;
    }
    expect(seen).toEqual(ids);
  });

  it('changes url, events, description and enabled with PATCH', async () => {
    const api = await user();
    const { data: hook } = await create(api);
    const { data, response } = await api.PATCH('/api/v1/webhooks/{webhookId}', {
      ...path(hook!.id),
      body: { url: 'https://other.example.com/h', events: ['task.deleted'], description: null, enabled: false },
    });
    expect(response.status).toBe(200);
    expect(data).toMatchObject({
      url: 'https://other.example.com/h',
      events: ['task.deleted'],
      description: null,
      enabled: false,
    });
    expect(
      (await api.PATCH('/api/v1/webhooks/{webhookId}', { ...path(hook!.id), body: { url: 'https://10.1.2.3/' } }))
        .response.status,
    ).toBe(422);
  });

  it('rotates the secret: a new one, shown once', async () => {
    const api = await user();
    const { data: hook } = await create(api);
    const { data, response } = await api.POST('/api/v1/webhooks/{webhookId}/rotate-secret', path(hook!.id));
    expect(response.status).toBe(200);
    expect(data!.secret).toMatch(/^whsec_/);
    expect(data!.secret).not.toBe(hook!.secret);
  });

  it('deletes an endpoint: 204, then 404', async () => {
    const api = await user();
    const { data: hook } = await create(api);
    expect((await api.DELETE('/api/v1/webhooks/{webhookId}', path(hook!.id))).response.status).toBe(204);
    expect((await api.GET('/api/v1/webhooks/{webhookId}', path(hook!.id))).response.status).toBe(404);
    expect((await api.DELETE('/api/v1/webhooks/{webhookId}', path(hook!.id))).response.status).toBe(404);
  });

  it('queues a test event (202) and refuses one for a disabled endpoint (409)', async () => {
    const api = await user();
    const { data: hook } = await create(api);
    const { data, response } = await api.POST('/api/v1/webhooks/{webhookId}/test', path(hook!.id));
    expect(response.status).toBe(202);
    expect(data).toMatchObject({
      webhook_id: hook!.id,
      event_type: 'webhook.test',
      status: 'pending',
      attempts_made: 0,
      attempts: [],
    });
    await api.PATCH('/api/v1/webhooks/{webhookId}', { ...path(hook!.id), body: { enabled: false } });
    const refused = await api.POST('/api/v1/webhooks/{webhookId}/test', path(hook!.id));
    expect(refused.response.status).toBe(409);
    expect(refused.error).toMatchObject({ type: 'urn:tasks-api:problem:webhook-disabled' });
  });
});

describe('owner isolation', () => {
  it('no user sees, changes, tests or reads the deliveries of another’s endpoints', async () => {
    const alice = await user();
    const bob = await user();
    const { data: hook } = await create(alice, { events: ['task.created'] });
    await alice.POST('/api/v1/tasks', { body: buildTask() });
    const { data: deliveries } = await alice.GET('/api/v1/webhooks/{webhookId}/deliveries', path(hook!.id));
    expect(deliveries!.items).toHaveLength(1);
    const delivery = deliveries!.items[0]!;

    expect((await bob.GET('/api/v1/webhooks/{webhookId}', path(hook!.id))).response.status).toBe(404);
    expect(
      (
        await bob.PATCH('/api/v1/webhooks/{webhookId}', {
          ...path(hook!.id),
          body: { url: 'https://evil.example.com/' },
        })
      ).response.status,
    ).toBe(404);
    expect((await bob.POST('/api/v1/webhooks/{webhookId}/rotate-secret', path(hook!.id))).response.status).toBe(404);
    expect((await bob.POST('/api/v1/webhooks/{webhookId}/test', path(hook!.id))).response.status).toBe(404);
    expect((await bob.GET('/api/v1/webhooks/{webhookId}/deliveries', path(hook!.id))).response.status).toBe(404);
    const redeliver = await bob.POST('/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver', {
      params: { path: { webhookId: hook!.id, deliveryId: delivery.id } },
    });
    expect(redeliver.response.status).toBe(404);
    expect((await bob.DELETE('/api/v1/webhooks/{webhookId}', path(hook!.id))).response.status).toBe(404);
    expect((await bob.GET('/api/v1/webhooks')).data!.items).toEqual([]);

    // Bob's own tasks never reach Alice's endpoint.
    await bob.POST('/api/v1/tasks', { body: buildTask() });
    expect((await alice.GET('/api/v1/webhooks/{webhookId}/deliveries', path(hook!.id))).data!.items).toHaveLength(1);
    expect((await alice.GET('/api/v1/webhooks/{webhookId}', path(hook!.id))).data!.url).toBe(RECEIVER);
  });
});

describe('the outbox: events are written with the change that causes them', () => {
  it('writes task.created, task.updated + task.completed and task.deleted for the subscribed types only', async () => {
    const api = await user();
    const { data: all } = await create(api, {
      events: ['task.created', 'task.updated', 'task.completed', 'task.deleted'],
    });
    const { data: deletesOnly } = await create(api, { events: ['task.deleted'] });
    const { data: task } = await api.POST('/api/v1/tasks', { body: buildTask() });
    await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task!.id } }, body: { completed: true } });
    await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: task!.id } } });
    const types = async (id: string) =>
      (await api.GET('/api/v1/webhooks/{webhookId}/deliveries', path(id))).data!.items.map((d) => d.event_type).sort();
    expect(await types(all!.id)).toEqual(['task.completed', 'task.created', 'task.deleted', 'task.updated']);
    expect(await types(deletesOnly!.id)).toEqual(['task.deleted']);
  });

  it('writes nothing for a change that did not happen (412, 404) and nothing to a disabled endpoint', async () => {
    const api = await user();
    const { data: hook } = await create(api, { events: ['task.updated', 'task.deleted'] });
    const { data: task } = await api.POST('/api/v1/tasks', { body: buildTask() });
    const stale = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task!.id } },
      body: { title: 'x' },
      headers: { 'If-Match': '"999"' },
    });
    expect(stale.response.status).toBe(412);
    await api.DELETE('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: '00000000-0000-4000-8000-000000000000' } },
    });
    expect((await api.GET('/api/v1/webhooks/{webhookId}/deliveries', path(hook!.id))).data!.items).toEqual([]);
    await api.PATCH('/api/v1/webhooks/{webhookId}', { ...path(hook!.id), body: { enabled: false } });
    await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task!.id } }, body: { title: 'y' } });
    expect((await api.GET('/api/v1/webhooks/{webhookId}/deliveries', path(hook!.id))).data!.items).toEqual([]);
  });

  it('keeps one task.due per due task: moved with due_at, gone when completed or deleted', async () => {
    const api = await user();
    const { data: hook } = await create(api, { events: ['task.due'] });
    const due = (at: number) => new Date(Date.now() + at).toISOString();
    const pending = async () =>
      (
        await api.GET('/api/v1/webhooks/{webhookId}/deliveries', {
          ...path(hook!.id),
          params: { ...path(hook!.id).params, query: { status: 'pending' } },
        })
      ).data!.items;
    const { data: task } = await api.POST('/api/v1/tasks', { body: buildTask({ due_at: due(3_600_000) }) });
    const taskPath = { params: { path: { taskId: task!.id } } };
    expect(await pending()).toHaveLength(1);
    const later = due(7_200_000);
    await api.PATCH('/api/v1/tasks/{taskId}', { ...taskPath, body: { due_at: later } });
    const moved = await pending();
    expect(moved).toHaveLength(1);
    expect(moved[0]!.next_attempt_at).toBe(later);
    await api.PATCH('/api/v1/tasks/{taskId}', { ...taskPath, body: { title: 'renamed' } });
    expect(await pending()).toHaveLength(1);
    await api.PATCH('/api/v1/tasks/{taskId}', { ...taskPath, body: { completed: true } });
    expect(await pending()).toHaveLength(0);
    await api.PATCH('/api/v1/tasks/{taskId}', { ...taskPath, body: { completed: false } });
    expect(await pending()).toHaveLength(1);
    await api.DELETE('/api/v1/tasks/{taskId}', taskPath);
    expect(await pending()).toHaveLength(0);
  });

  it('cancels a task.due that is already retrying when its task is completed, moved or deleted', async () => {
    const api = await user();
    const { data: hook } = await create(api, { events: ['task.due'] });
    const dueRows = () =>
      server.database.db
        .selectFrom('webhook_deliveries')
        .select(['id', 'status', 'next_attempt_at'])
        .where('endpoint_id', '=', hook!.id)
        .execute();
    // As the worker leaves one after a failed attempt: pending, one attempt made, a retry due.
    const retrying = () =>
      server.database.db
        .updateTable('webhook_deliveries')
        .set({ attempts_made: 1, next_attempt_at: new Date(Date.now() + 60_000) })
        .where('endpoint_id', '=', hook!.id)
        .execute();
    const change = async (body: { completed?: boolean; due_at?: string }, taskId: string) =>
      api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId } }, body });
    const soon = new Date(Date.now() - 1000).toISOString();

    const { data: completed } = await api.POST('/api/v1/tasks', { body: buildTask({ due_at: soon }) });
    await retrying();
    await change({ completed: true }, completed!.id);
    expect(await dueRows()).toEqual([]);

    const { data: moved } = await api.POST('/api/v1/tasks', { body: buildTask({ due_at: soon }) });
    await retrying();
    const [before] = await dueRows();
    const later = new Date(Date.now() + 3_600_000).toISOString();
    await change({ due_at: later }, moved!.id);
    const after = await dueRows();
    expect(after).toHaveLength(1);
    expect(after[0]!.id).not.toBe(before!.id);
    expect(after[0]!.next_attempt_at!.toISOString()).toBe(later);

    await retrying();
    await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: moved!.id } } });
    expect(await dueRows()).toEqual([]);
  });

  it('sends no second task.due to an endpoint that had it when the task is edited, and refreshes one not yet sent', async () => {
    const api = await user();
    const { data: sent } = await create(api, { events: ['task.due'] });
    const { data: waiting } = await create(api, { events: ['task.due'] });
    const { data: task } = await api.POST('/api/v1/tasks', {
      body: buildTask({ title: 'before', due_at: new Date(Date.now() - 1000).toISOString() }),
    });
    const rows = async (endpointId: string) =>
      server.database.db
        .selectFrom('webhook_deliveries')
        .select(['event_id', 'status', 'payload'])
        .where('endpoint_id', '=', endpointId)
        .execute();
    // One endpoint has had its task.due; the other's is still waiting (a backlog, say).
    await server.database.db
      .updateTable('webhook_deliveries')
      .set({ status: 'succeeded', attempts_made: 1, next_attempt_at: null })
      .where('endpoint_id', '=', sent!.id)
      .execute();
    const [queued] = await rows(waiting!.id);

    await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task!.id } }, body: { title: 'after' } });
    expect((await rows(sent!.id)).map((r) => r.status)).toEqual(['succeeded']);
    const [refreshed] = await rows(waiting!.id);
    expect(refreshed!.event_id).toBe(queued!.event_id);
    expect(refreshed!.payload).toMatchObject({
      id: queued!.event_id,
      type: 'task.due',
      data: { id: task!.id, title: 'after', version: 2 },
    });
  });
});
