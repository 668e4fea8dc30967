import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { buildTask } from '../helpers/factories.js';
import { scratchDatabase, startServer, type TestServer } from '../helpers/server.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/**
 * One user's endpoint that never answers must not hold up everyone else's deliveries: a worker
 * runs at most `endpointConcurrency` attempts to one endpoint at once (pg-boss group concurrency),
 * so the rest of its slots go to other endpoints.
 */
let server: TestServer;
let receiver: Receiver;
let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

const TIMEOUT_MS = 15_000;

beforeAll(async () => {
  receiver = await startReceiver();
  scratch = await scratchDatabase();
  server = await startServer({ databaseUrl: scratch.url, webhooks: { runWorker: true, concurrency: 4, endpointConcurrency: 2, timeoutMs: TIMEOUT_MS, pollMs: 100 } });
});
afterAll(async () => {
  await receiver.close(); // the held requests fail at once, so the worker stops without waiting them out
  await server.close();
  await scratch.drop();
});

async function subscriber() {
  const api = server.client(await server.tokenFor());
  const key = randomUUID();
  const { data: hook } = await api.POST('/api/v1/webhooks', { body: { url: `${receiver.url}/${key}`, events: ['task.created'] } });
  receiver.setSecret(key, hook!.secret);
  return { api, key, mine: () => receiver.deliveries.filter((d) => d.key === key) };
}

describe('a hanging endpoint', () => {
  it('holds at most endpointConcurrency of a worker’s slots: another user’s event is delivered meanwhile', async () => {
    const stuck = await subscriber();
    receiver.holdNext(stuck.key, 100);
    for (let i = 0; i < 10; i++) await stuck.api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => stuck.mine().length >= 2, 10_000);

    const other = await subscriber();
    const sent = Date.now();
    await other.api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => other.mine().length === 1, TIMEOUT_MS);
    // With all four slots taken by the hanging endpoint, this would wait out its timeout.
    expect(Date.now() - sent).toBeLessThan(TIMEOUT_MS / 3);
    expect(other.mine()[0]!.verified).toBe(true);
    // Its ten deliveries were queued at once, yet no more than two were ever sent side by side.
    expect(stuck.mine()).toHaveLength(2);
  }, 60_000);
});
