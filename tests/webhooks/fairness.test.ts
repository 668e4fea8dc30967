import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { defaultConfig } from '../../src/config.js';
import { startWebhookWorker, type WebhookWorker } from '../../src/webhooks/jobs/worker.js';
import { MAX_WEBHOOKS } from '../../src/webhooks/webhooks.service.js';
import { buildTask } from '../helpers/factories.js';
import { mostAtOnce } from '../helpers/attack.js';
import { captureLogs } from '../helpers/logs.js';
import { scratchDatabase, startServer, type TestServer } from '../helpers/server.js';
import { startReceiver, type Delivery, type Receiver } from '../helpers/webhook-receiver.js';

/**
 * Delivery capacity is shared between owners: two workers (one in the server, one beside it on the
 * same database; on PostgreSQL each with its own pool, fetching at the same moments), four slots
 * each. One endpoint that never answers holds at most `endpointConcurrency` slots; one owner's
 * endpoints, however many, hold at most `ownerConcurrency` together, across both workers; and
 * another owner's event is sent at once meanwhile, not after an attempt timeout.
 * The circuit breaker is kept out of the way here (it has its own file): these endpoints hang for ever.
 */
let server: TestServer;
let second: WebhookWorker;
let receiver: Receiver;
let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

const TIMEOUT_MS = 5000;
const OWNER_CONCURRENCY = 2;
/** How late this process may see a held request's close after its worker cut it off. */
const CLOSE_LAG_MS = 100;
/** How soon another owner's event must arrive: well under one attempt timeout. */
const VICTIM_BOUND_MS = 2000;
const webhooks = {
  ...defaultConfig().webhooks,
  concurrency: 4,
  endpointConcurrency: 2,
  ownerConcurrency: OWNER_CONCURRENCY,
  timeoutMs: TIMEOUT_MS,
  pollMs: 100,
  circuitTimeouts: 1000,
};

beforeAll(async () => {
  receiver = await startReceiver();
  scratch = await scratchDatabase();
  server = await startServer({ databaseUrl: scratch.url, webhooks: { ...webhooks, runWorker: true } });
  second = await startWebhookWorker({
    database: server.database,
    databaseUrl: scratch.url,
    config: webhooks,
    logger: captureLogs().logger,
  });
});
afterAll(async () => {
  await receiver.close(); // the held requests fail at once, so the workers stop without waiting them out
  await second?.stop(2000);
  await server.close();
  await scratch.drop();
});

/**
 * The most requests the receiver held open at once. It runs in this process beside the workers, so
 * it may take the next request's arrival before the 'close' of the one a worker just cut off (the
 * worker sends the next only after that abort is recorded): an arrival within CLOSE_LAG_MS before
 * an end is that lag, not an overlap.
 */
const openAtOnce = (deliveries: Delivery[]) =>
  mostAtOnce(deliveries.map((d) => [d.at + CLOSE_LAG_MS, d.endedAt ?? Infinity] as const));

/** A new user with `endpoints` endpoints on the receiver (a key each) subscribed to task.created. */
async function owner(endpoints = 1) {
  const api = server.client(await server.tokenFor());
  const keys: string[] = [];
  for (let i = 0; i < endpoints; i++) {
    const key = randomUUID();
    const { data: hook } = await api.POST('/api/v1/webhooks', {
      body: { url: `${receiver.url}/${key}`, events: ['task.created'] },
    });
    receiver.setSecret(key, hook!.secret);
    keys.push(key);
  }
  return { api, keys, key: keys[0]!, mine: () => receiver.deliveries.filter((d) => keys.includes(d.key)) };
}

/** A user whose MAX_WEBHOOKS endpoints all accept the connection and never answer, after `changes` task changes. */
async function noisyOwner(changes: number) {
  const noisy = await owner(MAX_WEBHOOKS);
  for (const key of noisy.keys) receiver.holdNext(key, 1000);
  for (let i = 0; i < changes; i++) await noisy.api.POST('/api/v1/tasks', { body: buildTask() });
  return noisy;
}

describe('a hanging endpoint', () => {
  it('holds at most endpointConcurrency slots: another user’s event is delivered meanwhile', async () => {
    const stuck = await owner();
    receiver.holdNext(stuck.key, 100);
    for (let i = 0; i < 10; i++) await stuck.api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => stuck.mine().length >= 2, 10_000);

    const other = await owner();
    const sent = Date.now();
    await other.api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => other.mine().length === 1, TIMEOUT_MS);
    expect(Date.now() - sent).toBeLessThan(VICTIM_BOUND_MS);
    expect(other.mine()[0]!.verified).toBe(true);
    // Its ten deliveries were written at once, yet no more than two were ever open side by side.
    expect(openAtOnce(stuck.mine())).toBe(2);
  }, 30_000);
});

describe('one owner with many hanging endpoints', () => {
  it(`does not delay another owner’s event: it arrives within ${VICTIM_BOUND_MS} ms, well under one attempt timeout (${TIMEOUT_MS} ms)`, async () => {
    // 20 endpoints × 5 changes: 100 deliveries that each hold a slot until the timeout. Capped per
    // endpoint only, they took all eight slots of both workers (and the victim waited a timeout).
    const noisy = await noisyOwner(5);
    await receiver.waitFor(() => noisy.mine().length >= OWNER_CONCURRENCY, 10_000);

    const victim = await owner();
    const sent = Date.now();
    await victim.api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => victim.mine().length === 1, 2 * TIMEOUT_MS);
    expect(Date.now() - sent).toBeLessThan(VICTIM_BOUND_MS);
    expect(victim.mine()[0]).toMatchObject({ verified: true, answered: 200 });
  }, 30_000);

  it(`never has more than ownerConcurrency (${OWNER_CONCURRENCY}) attempts open at once, across both workers, round after round`, async () => {
    const noisy = await noisyOwner(5);
    // Three rounds: the first two attempts, then two more after each timeout.
    await receiver.waitFor(() => noisy.mine().length >= 3 * OWNER_CONCURRENCY, 4 * TIMEOUT_MS);
    // Counted at the receiver: requests that were open (held, unanswered) at the same moment.
    expect(openAtOnce(noisy.mine())).toBe(OWNER_CONCURRENCY);
    // And the held ones really were cut off by the timeout, one round after the other.
    const ended = noisy.mine().filter((d) => d.endedAt !== undefined);
    expect(ended.length).toBeGreaterThanOrEqual(2 * OWNER_CONCURRENCY);
    for (const d of ended) expect(d.endedAt! - d.at).toBeGreaterThanOrEqual(TIMEOUT_MS - 500);
  }, 40_000);
});
