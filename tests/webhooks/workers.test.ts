import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { defaultConfig } from '../../src/config.js';
import { startWebhookWorker, type WebhookWorker } from '../../src/webhooks/jobs/worker.js';
import { buildTask } from '../helpers/factories.js';
import { captureLogs } from '../helpers/logs.js';
import { scratchDatabase, startServer, type TestServer } from '../helpers/server.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/** Several workers on one database (here two in one process; on PostgreSQL they could be anywhere). */
let server: TestServer;
let second: WebhookWorker;
let receiver: Receiver;
/** On PostgreSQL a database of its own: another file's worker must not run this file's deliveries (with its own settings). */
let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

beforeAll(async () => {
  receiver = await startReceiver();
  scratch = await scratchDatabase();
  const webhooks = { ...defaultConfig().webhooks, pollMs: 50, concurrency: 4 };
  server = await startServer({ databaseUrl: scratch.url, webhooks: { ...webhooks, runWorker: true } });
  const { logger } = captureLogs();
  second = await startWebhookWorker({ database: server.database, databaseUrl: scratch.url, config: webhooks, logger });
});
afterAll(async () => {
  await second.stop(2000);
  await server.close();
  await receiver.close();
  await scratch.drop();
});

describe('two workers', () => {
  it('deliver every event exactly once when nothing fails', async () => {
    const api = server.client(await server.tokenFor());
    const key = randomUUID();
    const { data: hook } = await api.POST('/api/v1/webhooks', {
      body: { url: `${receiver.url}/${key}`, events: ['task.created', 'task.updated'] },
    });
    receiver.setSecret(key, hook!.secret);
    const tasks = await Promise.all(Array.from({ length: 40 }, () => api.POST('/api/v1/tasks', { body: buildTask() })));
    await Promise.all(
      tasks.map(({ data }) =>
        api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: data!.id } }, body: { priority: 'high' } }),
      ),
    );
    const mine = () => receiver.deliveries.filter((d) => d.key === key);
    await receiver.waitFor(() => mine().length >= 80, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // room for a duplicate to show up
    const ids = mine().map((d) => d.headers['webhook-id']);
    expect(ids).toHaveLength(80);
    expect(new Set(ids).size).toBe(80);
    expect(mine().every((d) => d.verified)).toBe(true);
  }, 60_000);
});
