// @tasks-api/client against the real API: typed problems, pagination, automatic Idempotency-Key,
// If-Match from what was read.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  createTasksClient,
  etagOf,
  ifMatch,
  paginate,
  ProblemError,
  unwrap,
  type Problem,
  type Task,
  type TasksClient,
} from '../../packages/client/src/index.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

/** The global fetch, recording what was sent (the server is real). */
function recordingFetch() {
  const sent: { method: string; url: URL; headers: Headers }[] = [];
  const fetch = (request: Request): Promise<Response> => {
    sent.push({ method: request.method, url: new URL(request.url), headers: new Headers(request.headers) });
    return globalThis.fetch(request);
  };
  return { fetch, sent };
}

async function client(): Promise<{ api: TasksClient; sent: ReturnType<typeof recordingFetch>['sent'] }> {
  const token = await server.tokenFor();
  const { fetch, sent } = recordingFetch();
  return { api: createTasksClient({ baseUrl: server.url, token: async () => token, fetch }), sent };
}

describe('ProblemError and unwrap', () => {
  it('unwrap returns the data of a success', async () => {
    const { api } = await client();
    const task = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'Typed' } }));
    expect(task.title).toBe('Typed');
    const read = await unwrap(api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } }));
    expect(read.id).toBe(task.id);
  });

  it('a 422 throws a ProblemError with its status, type, problem (errors per field) and response', async () => {
    const { api } = await client();
    const failure = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'x'.repeat(201) } })).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ProblemError);
    expect(failure).toBeInstanceOf(Error);
    if (!(failure instanceof ProblemError)) throw failure;
    // `instanceof` gives ProblemError<any> (it knows the class, not its type argument): the contract's problem.
    const problem = failure.problem as Problem;
    expect(failure.name).toBe('ProblemError');
    expect(failure.status).toBe(422);
    expect(failure.type).toBe('urn:tasks-api:problem:validation-failed');
    expect(problem.errors).toEqual([expect.objectContaining({ in: 'body', pointer: '/title' })]);
    expect(failure.response.status).toBe(422);
    expect(failure.response.headers.get('X-Request-Id')).toBe(problem.request_id);
    expect(failure.message).toContain('422');
    expect(failure.is(422)).toBe(true);
    expect(failure.is(404)).toBe(false);
    if (failure.is(422)) expect(problem.errors_total).toBe(1);
  });

  it('the plain result keeps its typed error', async () => {
    const { api } = await client();
    const { data, error, response } = await api.GET('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: '00000000-0000-4000-8000-000000000000' } },
    });
    expect(data).toBeUndefined();
    expect(response.status).toBe(404);
    expect(error).toMatchObject({ status: 404, type: 'urn:tasks-api:problem:task-not-found' });
  });

  it('a 401 without a token is a ProblemError too', async () => {
    const api = createTasksClient({ baseUrl: server.url });
    await expect(unwrap(api.GET('/api/v1/tasks'))).rejects.toMatchObject({ name: 'ProblemError', status: 401 });
  });
});

describe('paginate', () => {
  it('yields every item across pages, following next_cursor with the same filters', async () => {
    const { api, sent } = await client();
    const titles = ['a', 'b', 'c', 'd', 'e'];
    for (const title of titles) await unwrap(api.POST('/api/v1/tasks', { body: { title, tags: ['paged'] } }));
    await unwrap(api.POST('/api/v1/tasks', { body: { title: 'not paged' } }));
    sent.length = 0;

    const seen: Task[] = [];
    for await (const task of paginate(api, '/api/v1/tasks', {
      params: { query: { tag: ['paged'], sort: 'title', limit: 2 } },
    }))
      seen.push(task);
    expect(seen.map((t) => t.title)).toEqual(titles);
    const pages = sent.filter((r) => r.url.pathname === '/api/v1/tasks');
    expect(pages).toHaveLength(3);
    expect(pages[0]!.url.searchParams.has('cursor')).toBe(false);
    for (const page of pages) expect(page.url.searchParams.get('sort')).toBe('title');
    expect(pages[2]!.url.searchParams.get('cursor')).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('stops asking for pages when the loop stops', async () => {
    const { api, sent } = await client();
    for (const title of ['a', 'b', 'c']) await unwrap(api.POST('/api/v1/tasks', { body: { title } }));
    sent.length = 0;
    for await (const task of paginate(api, '/api/v1/tasks', { params: { query: { limit: 1 } } })) {
      expect(task.title).toBeDefined();
      break;
    }
    expect(sent).toHaveLength(1);
  });

  it('works for every paged list: a task with no attachments, and no webhooks', async () => {
    const { api } = await client();
    const task = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'bare' } }));
    const attachments = [];
    for await (const attachment of paginate(api, '/api/v1/tasks/{taskId}/attachments', {
      params: { path: { taskId: task.id } },
    }))
      attachments.push(attachment);
    expect(attachments).toEqual([]);
    const webhooks = [];
    for await (const webhook of paginate(api, '/api/v1/webhooks')) webhooks.push(webhook);
    expect(webhooks).toEqual([]);
  });

  it('throws a ProblemError for a page that fails', async () => {
    const { api } = await client();
    const pages = paginate(api, '/api/v1/tasks', { params: { query: { cursor: 'not-a-cursor' } } });
    await expect(pages.next()).rejects.toMatchObject({ name: 'ProblemError', status: 422 });
  });
});

describe('Idempotency-Key', () => {
  it('is generated for POST /api/v1/tasks, a new one per call; replaying it returns the same task', async () => {
    const { api, sent } = await client();
    const first = await api.POST('/api/v1/tasks', { body: { title: 'Once' } });
    const second = await api.POST('/api/v1/tasks', { body: { title: 'Once' } });
    const keys = sent.map((r) => r.headers.get('Idempotency-Key'));
    expect(keys[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(keys[1]).not.toBe(keys[0]);
    expect(second.data!.id).not.toBe(first.data!.id);

    // The same key again (as a retry of the first call would send it): the stored response, no new task.
    const replay = await api.POST('/api/v1/tasks', {
      params: { header: { 'Idempotency-Key': keys[0]! } },
      body: { title: 'Once' },
    });
    expect(replay.response.status).toBe(201);
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data!.id).toBe(first.data!.id);
    expect(sent[2]!.headers.get('Idempotency-Key')).toBe(keys[0]); // the caller's key, untouched
  });

  it('is not sent to operations that do not declare it, nor when turned off', async () => {
    const { api, sent } = await client();
    const task = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'With a key' } }));
    await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } }, body: { completed: true } });
    await api.GET('/api/v1/tasks');
    expect(sent.map((r) => r.headers.has('Idempotency-Key'))).toEqual([true, false, false]);

    const token = await server.tokenFor();
    const recorder = recordingFetch();
    const off = createTasksClient({ baseUrl: server.url, token, fetch: recorder.fetch, idempotency: false });
    await unwrap(off.POST('/api/v1/tasks', { body: { title: 'No key' } }));
    expect(recorder.sent[0]!.headers.has('Idempotency-Key')).toBe(false);
  });
});

describe('ifMatch', () => {
  it('sends the ETag the task was read with: 200 while current, 412 once stale', async () => {
    const { api } = await client();
    const created = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'Draft' } }));
    expect(etagOf(created)).toBe(`"${created.version}"`);

    const updated = await unwrap(
      api.PATCH('/api/v1/tasks/{taskId}', {
        params: { path: { taskId: created.id }, header: ifMatch(created) },
        body: { title: 'Final' },
      }),
    );
    expect(updated.version).toBe(created.version + 1);

    const stale = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: created.id }, header: ifMatch(created) },
      body: { title: 'Lost update' },
    });
    expect(stale.response.status).toBe(412);
    expect(stale.error).toMatchObject({ status: 412 });
    await expect(
      unwrap(
        api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: created.id }, header: ifMatch(created) } }),
      ),
    ).rejects.toMatchObject({ status: 412 });

    const fresh = await unwrap(api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: created.id } } }));
    expect(fresh.title).toBe('Final');
    expect(ifMatch(fresh)).toEqual({ 'If-Match': `"${updated.version}"` });
    const done = await api.PUT('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: created.id }, header: ifMatch(fresh) },
      body: { title: 'Final', completed: true },
    });
    expect(done.response.status).toBe(200);
  });

  it('a list item (no ETag header of its own) falls back to its version, as the contract defines the ETag', async () => {
    const { api } = await client();
    const created = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'Listed' } }));
    const { data: page } = await api.GET('/api/v1/tasks');
    const item = page!.items.find((t) => t.id === created.id)!;
    expect(ifMatch(item)).toEqual({ 'If-Match': `"${item.version}"` });
    const { response } = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: item.id }, header: ifMatch(item) },
      body: { priority: 'low' },
    });
    expect(response.status).toBe(200);

    // The header is remembered per object: a copy is a new object, known only by its version.
    const copy = { ...created, version: 999 };
    expect(etagOf(copy)).toBe('"999"');
    expect(etagOf(created)).toBe(`"${created.version}"`);
    expect(() => ifMatch({ id: 'no version' })).toThrow(TypeError);
  });
});
