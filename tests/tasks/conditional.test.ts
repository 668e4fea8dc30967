import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Task, TasksClient } from '../../packages/client/src/index.js';
import { buildTask } from '../helpers/factories.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let api: TasksClient;
beforeAll(async () => {
  server = await startServer();
  api = server.client(await server.tokenFor(newUser()));
});
afterAll(() => server.close());

async function create(): Promise<Task> {
  const { data, response } = await api.POST('/api/v1/tasks', { body: buildTask() });
  expect(response.headers.get('etag')).toBe('"1"');
  return data!;
}

const patch = (task: Task, ifMatch: string | undefined, body: { title?: string } = { title: 'changed' }) =>
  api.PATCH('/api/v1/tasks/{taskId}', {
    params: { path: { taskId: task.id }, header: ifMatch === undefined ? {} : { 'If-Match': ifMatch } },
    body,
  });

describe('ETag on every single-task response', () => {
  it('starts at "1" and follows the version through each change', async () => {
    const task = await create();
    expect(task.version).toBe(1);
    const read = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } });
    expect(read.response.headers.get('etag')).toBe('"1"');
    const patched = await patch(task, undefined);
    expect([patched.response.headers.get('etag'), patched.data!.version]).toEqual(['"2"', 2]);
    const replaced = await api.PUT('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id } },
      body: { title: 'whole' },
    });
    expect([replaced.response.headers.get('etag'), replaced.data!.version]).toEqual(['"3"', 3]);
  });

  it('an empty merge patch changes nothing, not even the version', async () => {
    const task = await create();
    const { data, response } = await patch(task, '"1"', {});
    expect([response.status, response.headers.get('etag'), data!.version]).toEqual([200, '"1"', 1]);
  });
});

describe('GET with If-None-Match', () => {
  it.each([['"1"'], ['W/"1"'], ['"7", "1"'], ['*']])('answers 304 without a body for %s', async (ifNoneMatch) => {
    const task = await create();
    // For another user the task does not exist: 404 wins over the precondition, nothing leaks.
    const stranger = server.client(await server.tokenFor(newUser()));
    const theirs = await stranger.GET('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id }, header: { 'If-None-Match': ifNoneMatch } },
    });
    expect(theirs.response.status).toBe(404);
    const mine = await api.GET('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id }, header: { 'If-None-Match': ifNoneMatch } },
    });
    expect(mine.response.status).toBe(304);
    expect(mine.response.headers.get('etag')).toBe('"1"');
    expect(await mine.response.clone().text()).toBe('');
  });

  it('answers 200 with the task once it has changed', async () => {
    const task = await create();
    await patch(task, undefined);
    const { data, response } = await api.GET('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id }, header: { 'If-None-Match': '"1"' } },
    });
    expect([response.status, response.headers.get('etag'), data!.title]).toEqual([200, '"2"', 'changed']);
  });
});

describe('PATCH, PUT and DELETE with If-Match', () => {
  it('proceed when If-Match names the current version, or is *', async () => {
    const task = await create();
    expect((await patch(task, '"1"')).response.status).toBe(200);
    expect((await patch(task, '"9", "2"')).response.status).toBe(200);
    expect((await patch(task, '*')).response.status).toBe(200);
    const del = await api.DELETE('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task.id }, header: { 'If-Match': '"4"' } },
    });
    expect(del.response.status).toBe(204);
  });

  it.each([
    ['"1"', 'a stale version'],
    ['W/"2"', 'a weak tag (If-Match compares strongly)'],
    ['"abc"', 'a tag this API never issues'],
    ['"02"', 'the current version spelled with a leading zero (tags compare as exact strings)'],
    ['"+2"', 'the current version with a sign'],
    ['"99999999999"', 'a version no task can have'],
    ['"2147483648"', 'one past the largest version'],
  ])('answer 412 problem+json for %s (%s) and change nothing', async (ifMatch) => {
    const task = await create();
    await patch(task, undefined, { title: 'second version' });
    const attempts = [
      await patch(task, ifMatch),
      await api.PUT('/api/v1/tasks/{taskId}', {
        params: { path: { taskId: task.id }, header: { 'If-Match': ifMatch } },
        body: { title: 'x' },
      }),
      await api.DELETE('/api/v1/tasks/{taskId}', {
        params: { path: { taskId: task.id }, header: { 'If-Match': ifMatch } },
      }),
    ];
    for (const { response, error } of attempts) {
      expect(response.status).toBe(412);
      expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(error).toMatchObject({ type: 'urn:tasks-api:problem:precondition-failed', status: 412 });
      expect((error as { detail: string }).detail).toContain('"2"');
    }
    const after = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } });
    expect([after.data!.title, after.data!.version]).toEqual(['second version', 2]);
  });

  it('answer 404, not 412, for a task that is not there', async () => {
    const { response } = await patch({ id: '0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11' } as Task, '"1"');
    expect(response.status).toBe(404);
  });

  it('of two writers holding the same version, exactly one wins', async () => {
    const task = await create();
    const results = await Promise.all([
      patch(task, '"1"', { title: 'writer A' }),
      patch(task, '"1"', { title: 'writer B' }),
    ]);
    const statuses = results.map((r) => r.response.status).sort();
    expect(statuses).toEqual([200, 412]);
    const winner = results.find((r) => r.response.status === 200)!.data!;
    const after = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id } } });
    expect([after.data!.title, after.data!.version]).toEqual([winner.title, 2]);
  });
});
