import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TasksClient } from '../../packages/client/src/index.js';
import { pgProxy, type PgProxy } from '../helpers/pg-proxy.js';
import { startServer, type TestServer } from '../helpers/server.js';

// The proxy needs a PostgreSQL server to stand in front of; CI's shared server is never stopped.
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

onPostgres('the database going away and coming back', () => {
  let proxy: PgProxy;
  let server: TestServer;
  let api: TasksClient;
  beforeAll(async () => {
    proxy = await pgProxy(new URL(process.env.TEST_DATABASE_URL!));
    server = await startServer({ databaseUrl: proxy.url, requestTimeoutMs: 2000 });
    api = server.client(await server.tokenFor());
  });
  afterAll(async () => {
    await server?.close();
    await proxy?.close();
  });

  const timed = async <T>(work: () => Promise<T>) => {
    const started = Date.now();
    const result = await work();
    return { result, ms: Date.now() - started };
  };

  it('answers 503 problem+json with Retry-After while it is down, writes nothing, and recovers without a restart', async () => {
    const first = await api.POST('/api/v1/tasks', { body: { title: 'before the outage' } });
    expect(first.response.status).toBe(201);

    proxy.cut('refuse');
    const attempts: (() => Promise<{ response: Response; error?: unknown }>)[] = [
      () => api.GET('/api/v1/tasks'),
      () => api.POST('/api/v1/tasks', { body: { title: 'during the outage' } }),
      () =>
        api.PATCH('/api/v1/tasks/{taskId}', {
          params: { path: { taskId: first.data!.id } },
          body: { completed: true },
        }),
    ];
    for (const attempt of attempts) {
      const { result, ms } = await timed(attempt);
      expect(result.response.status).toBe(503);
      expect(result.response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(Number(result.response.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(JSON.stringify(result.error)).not.toMatch(/at |ECONN|postgres|select|insert/i); // no stack, no internals
      expect(ms).toBeLessThan(2500);
    }
    expect((await fetch(`${server.url}/health/ready`)).status).toBe(503);
    expect((await fetch(`${server.url}/health/live`)).status).toBe(200);

    proxy.restore();
    const after = await api.GET('/api/v1/tasks');
    expect(after.response.status).toBe(200);
    // The acknowledged write is there; the refused ones left nothing behind.
    expect(after.data!.items.map((t) => [t.title, t.completed])).toEqual([['before the outage', false]]);
    expect((await api.POST('/api/v1/tasks', { body: { title: 'after the outage' } })).response.status).toBe(201);
    // Readiness shares one database check a second among every probe: ready again within that.
    let ready = 0;
    for (
      const started = Date.now();
      ready !== 200 && Date.now() - started < 2500;
      await new Promise((resolve) => setTimeout(resolve, 100))
    ) {
      ready = (await fetch(`${server.url}/health/ready`)).status;
    }
    expect(ready).toBe(200);
  });

  it('does not hang when the network swallows everything: 503 within the request timeout', async () => {
    proxy.cut('blackhole');
    const { result, ms } = await timed(() => api.GET('/api/v1/tasks'));
    expect(result.response.status).toBe(503);
    expect(ms).toBeLessThan(3000);
    proxy.restore();
    // Connections the pool opened into the void fail on their own timeouts; the next ones work.
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i += 1) {
      status = (await api.GET('/api/v1/tasks')).response.status;
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(status).toBe(200);
  }, 30_000);
});
