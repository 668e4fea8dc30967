import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Task, TasksClient } from '../../packages/client/src/index.js';
import { buildTask } from '../helpers/factories.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let alice: TasksClient;
let bob: TasksClient;
let alicesTask: Task;

beforeAll(async () => {
  server = await startServer();
  alice = server.client(await server.tokenFor());
  bob = server.client(await server.tokenFor());
  alicesTask = (await alice.POST('/api/v1/tasks', { body: buildTask({ title: 'Alice only' }) })).data!;
  await bob.POST('/api/v1/tasks', { body: buildTask({ title: 'Bob only' }) });
});
afterAll(() => server.close());

describe('two users', () => {
  const path = () => ({ params: { path: { taskId: alicesTask.id } } });

  it('cannot read each other’s tasks: 404, the same as a task that does not exist', async () => {
    const { response, error } = await bob.GET('/api/v1/tasks/{taskId}', path());
    expect(response.status).toBe(404);
    expect(error).toMatchObject({ type: 'urn:tasks-api:problem:task-not-found' });
  });

  it('cannot change each other’s tasks with PATCH or PUT', async () => {
    expect((await bob.PATCH('/api/v1/tasks/{taskId}', { ...path(), body: { title: 'pwned' } })).response.status).toBe(
      404,
    );
    expect((await bob.PUT('/api/v1/tasks/{taskId}', { ...path(), body: { title: 'pwned' } })).response.status).toBe(
      404,
    );
  });

  it('cannot delete each other’s tasks', async () => {
    expect((await bob.DELETE('/api/v1/tasks/{taskId}', path())).response.status).toBe(404);
  });

  it('never see each other’s tasks in their lists or counts', async () => {
    const bobs = await bob.GET('/api/v1/tasks', { params: { query: { limit: 100 } } });
    expect(bobs.data!.items.map((t) => t.title)).toEqual(['Bob only']);
    expect((await bob.GET('/api/v1/me')).data!.tasks.total).toBe(1);
  });

  it('leave the other’s task exactly as it was after all those attempts', async () => {
    const { data } = await alice.GET('/api/v1/tasks/{taskId}', path());
    expect(data).toEqual(alicesTask);
  });
});
