import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TasksClient } from '../../packages/client/src/index.js';
import { buildTask } from '../helpers/factories.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

/** A client for a brand-new user. */
async function asNewUser(claims = {}): Promise<TasksClient> {
  return server.client(await server.tokenFor(newUser(), claims));
}

async function create(api: TasksClient, overrides = {}) {
  const { data, response } = await api.POST('/api/v1/tasks', { body: buildTask(overrides) });
  expect(response.status).toBe(201);
  return data!;
}

describe('POST /api/v1/tasks', () => {
  it('creates a task with 201, a Location header and server-set fields', async () => {
    const api = await asNewUser();
    const { data, response } = await api.POST('/api/v1/tasks', {
      body: {
        title: '  Renew passport  ',
        description: 'Photos in the drawer',
        priority: 'high',
        due_at: '2026-12-01T09:00:00.000Z',
        tags: ['admin', 'travel'],
      },
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('location')).toBe(`/api/v1/tasks/${data!.id}`);
    expect(data).toMatchObject({
      title: 'Renew passport',
      description: 'Photos in the drawer',
      completed: false,
      priority: 'high',
      due_at: '2026-12-01T09:00:00.000Z',
      tags: ['admin', 'travel'],
      completed_at: null,
    });
    expect(data!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(data!.created_at).toBe(data!.updated_at);
    expect(Date.now() - Date.parse(data!.created_at)).toBeLessThan(60_000);
  });

  it('applies the defaults for fields left out', async () => {
    const api = await asNewUser();
    const { data } = await api.POST('/api/v1/tasks', { body: { title: 'Minimal' } });
    expect(data).toMatchObject({ description: null, completed: false, priority: 'medium', due_at: null, tags: [] });
  });

  it('sets completed_at for a task created completed', async () => {
    const api = await asNewUser();
    const task = await create(api, { completed: true });
    expect(task.completed).toBe(true);
    expect(task.completed_at).not.toBeNull();
  });
});

describe('GET /api/v1/tasks/{taskId}', () => {
  it('returns the task, also at the URL its Location header gave', async () => {
    const token = await server.tokenFor();
    const api = server.client(token);
    const { data: created, response: createResponse } = await api.POST('/api/v1/tasks', { body: buildTask() });
    const { data, response } = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: created!.id } } });
    expect(response.status).toBe(200);
    expect(data).toEqual(created);
    const viaLocation = await fetch(`${server.url}${createResponse.headers.get('location')}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(await viaLocation.json()).toEqual(created);
  });

  it('answers 404 problem+json for an id that does not exist', async () => {
    const api = await asNewUser();
    const { error, response } = await api.GET('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: '00000000-0000-4000-8000-000000000000' } },
    });
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(error).toMatchObject({ type: 'urn:tasks-api:problem:task-not-found', status: 404 });
  });
});

describe('GET /api/v1/tasks', () => {
  it('lists the caller’s tasks newest first', async () => {
    const api = await asNewUser();
    const first = await create(api, { title: 'first' });
    const second = await create(api, { title: 'second' });
    const third = await create(api, { title: 'third' });
    const { data, response } = await api.GET('/api/v1/tasks');
    expect(response.status).toBe(200);
    expect(data!.items.map((t) => t.id)).toEqual([third.id, second.id, first.id]);
    expect(data!.next_cursor).toBeNull();
    expect(response.headers.get('link')).toBeNull();
  });

  it('filters by status', async () => {
    const api = await asNewUser();
    const done = await create(api, { completed: true });
    const open = await create(api, { completed: false });
    const pending = await api.GET('/api/v1/tasks', { params: { query: { status: 'pending' } } });
    const completed = await api.GET('/api/v1/tasks', { params: { query: { status: 'completed' } } });
    const all = await api.GET('/api/v1/tasks', { params: { query: { status: 'all' } } });
    expect(pending.data!.items.map((t) => t.id)).toEqual([open.id]);
    expect(completed.data!.items.map((t) => t.id)).toEqual([done.id]);
    expect(all.data!.items).toHaveLength(2);
  });

  it('pages through every task exactly once with next_cursor and a Link header', async () => {
    const api = await asNewUser();
    const created: string[] = [];
    for (let i = 0; i < 7; i += 1) created.push((await create(api)).id);

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const { data, response } = await api.GET('/api/v1/tasks', {
        params: { query: { limit: 3, ...(cursor ? { cursor } : {}) } },
      });
      pages += 1;
      seen.push(...data!.items.map((t) => t.id));
      cursor = data!.next_cursor ?? undefined;
      if (cursor) {
        expect(response.headers.get('link')).toBe(`</api/v1/tasks?limit=3&cursor=${cursor}>; rel="next"`);
      } else {
        expect(response.headers.get('link')).toBeNull();
      }
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([...created].reverse());
  });

  it('does not skip or repeat a task when tasks are created and deleted between pages', async () => {
    const api = await asNewUser();
    const ids: string[] = [];
    for (let i = 0; i < 6; i += 1) ids.push((await create(api)).id);
    const page1 = await api.GET('/api/v1/tasks', { params: { query: { limit: 3 } } });
    // A newer task and the deletion of the last row of page 1 must not shift page 2.
    await create(api);
    await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: page1.data!.items[2]!.id } } });
    const page2 = await api.GET('/api/v1/tasks', { params: { query: { limit: 3, cursor: page1.data!.next_cursor! } } });
    expect(page2.data!.items.map((t) => t.id)).toEqual([ids[2], ids[1], ids[0]]);
  });

  it('rejects a cursor issued for another status filter with 422', async () => {
    const api = await asNewUser();
    await create(api);
    await create(api);
    const page = await api.GET('/api/v1/tasks', { params: { query: { limit: 1 } } });
    const { error, response } = await api.GET('/api/v1/tasks', {
      params: { query: { limit: 1, status: 'pending', cursor: page.data!.next_cursor! } },
    });
    expect(response.status).toBe(422);
    expect(error!.errors).toEqual([
      { in: 'query', pointer: '/cursor', detail: 'it was issued for a different sort or different filters' },
    ]);
  });

  it.each([
    ['not base64 JSON', '!!!'],
    ['tampered', Buffer.from(JSON.stringify({ c: 'yesterday', i: 'x', f: 'status=all' })).toString('base64url')],
    ['truncated', Buffer.from('{"c":"2026-01-01T00:00:00.000Z","i":"0b6f').toString('base64url')],
  ])('rejects a %s cursor with 422', async (_label, cursor) => {
    const api = await asNewUser();
    const { error, response } = await api.GET('/api/v1/tasks', { params: { query: { cursor } } });
    expect(response.status).toBe(422);
    expect(error).toMatchObject({
      type: 'urn:tasks-api:problem:validation-failed',
      errors: [{ in: 'query', pointer: '/cursor' }],
    });
  });
});

describe('PATCH /api/v1/tasks/{taskId}', () => {
  it('changes only the fields present and moves updated_at', async () => {
    const api = await asNewUser();
    const task = await create(api, { title: 'Old', description: 'keep me', priority: 'low', tags: ['a'] });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const { data, response } = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id } },
      body: { title: ' New ', priority: 'high' },
    });
    expect(response.status).toBe(200);
    expect(data).toMatchObject({
      id: task.id,
      title: 'New',
      priority: 'high',
      description: 'keep me',
      tags: ['a'],
      created_at: task.created_at,
    });
    expect(Date.parse(data!.updated_at)).toBeGreaterThan(Date.parse(task.updated_at));
  });

  it('clears nullable fields with null (merge patch) and accepts application/merge-patch+json', async () => {
    const token = await server.tokenFor();
    const task = await create(server.client(token), { description: 'remove me', due_at: '2027-01-01T00:00:00.000Z' });
    const res = await fetch(`${server.url}/api/v1/tasks/${task.id}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/merge-patch+json' },
      body: JSON.stringify({ description: null, due_at: null }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ description: null, due_at: null, title: task.title });
  });

  it('sets completed_at when completed and clears it when reopened', async () => {
    const api = await asNewUser();
    const task = await create(api);
    const done = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id } },
      body: { completed: true },
    });
    expect(done.data!.completed_at).not.toBeNull();
    const again = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id } },
      body: { completed: true },
    });
    expect(again.data!.completed_at).toBe(done.data!.completed_at);
    const reopened = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id } },
      body: { completed: false },
    });
    expect(reopened.data).toMatchObject({ completed: false, completed_at: null });
  });

  it('leaves the task untouched for an empty patch', async () => {
    const api = await asNewUser();
    const task = await create(api);
    const { data } = await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } }, body: {} });
    expect(data).toEqual(task);
  });
});

describe('PUT /api/v1/tasks/{taskId}', () => {
  it('replaces the whole task, defaulting what the body leaves out, keeping id and created_at', async () => {
    const api = await asNewUser();
    const task = await create(api, {
      description: 'gone',
      priority: 'high',
      tags: ['x'],
      completed: true,
      due_at: '2027-01-01T00:00:00.000Z',
    });
    const { data, response } = await api.PUT('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id } },
      body: { title: 'Replaced' },
    });
    expect(response.status).toBe(200);
    expect(data).toMatchObject({
      id: task.id,
      title: 'Replaced',
      description: null,
      completed: false,
      completed_at: null,
      priority: 'medium',
      due_at: null,
      tags: [],
      created_at: task.created_at,
    });
  });

  it('answers 404 instead of creating a task under a client-chosen id', async () => {
    const api = await asNewUser();
    const { response } = await api.PUT('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: '00000000-0000-4000-8000-000000000001' } },
      body: { title: 'Nope' },
    });
    expect(response.status).toBe(404);
  });
});

describe('DELETE /api/v1/tasks/{taskId}', () => {
  it('deletes with 204, after which the task is gone', async () => {
    const api = await asNewUser();
    const task = await create(api);
    const del = await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } });
    expect(del.response.status).toBe(204);
    expect(await del.response.text()).toBe('');
    const get = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } });
    expect(get.response.status).toBe(404);
    const again = await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } });
    expect(again.response.status).toBe(404);
  });
});

describe('GET /api/v1/me', () => {
  it('shows the token’s identity and the caller’s task counts', async () => {
    const sub = newUser();
    const api = server.client(await server.tokenFor(sub, { email: 'ada@example.com', name: 'Ada', roles: ['admin'] }));
    await create(api, { completed: true });
    await create(api);
    await create(api);
    const { data, response } = await api.GET('/api/v1/me');
    expect(response.status).toBe(200);
    expect(data).toEqual({
      sub,
      scopes: ['tasks:read', 'tasks:write'],
      roles: ['admin'],
      email: 'ada@example.com',
      name: 'Ada',
      tasks: { total: 3, pending: 2, completed: 1 },
    });
  });
});
