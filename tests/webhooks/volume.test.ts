import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type { TasksClient } from '../../packages/client/src/index.js';
import { buildTask } from '../helpers/factories.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/**
 * Outbound volume per owner: at most `ownerDeliveriesPerMinute` attempts a minute (bursts of as
 * many), all endpoints together. What is over is postponed, visibly in the delivery log, and sent
 * in its turn: never dropped.
 */
let server: TestServer;
let receiver: Receiver;

const PER_MINUTE = 20; // one every 3 s once a burst of 20 is spent
const INTERVAL_MS = 60_000 / PER_MINUTE;

beforeAll(async () => {
  receiver = await startReceiver();
  server = await startServer({
    ownDatabase: true,
    webhooks: {
      runWorker: true,
      concurrency: 4,
      ownerConcurrency: 3,
      pollMs: 100,
      ownerDeliveriesPerMinute: PER_MINUTE,
    },
  });
});
afterAll(async () => {
  await receiver.close();
  await server.close();
});

const deliveriesOf = async (api: TasksClient, webhookId: string) =>
  (await api.GET('/api/v1/webhooks/{webhookId}/deliveries', { params: { path: { webhookId }, query: { limit: 100 } } }))
    .data!.items;

describe(`an owner over ${PER_MINUTE} deliveries a minute`, () => {
  it('has the rest postponed, visibly in the delivery log, and sent one by one in their turn', async () => {
    const api = server.client(await server.tokenFor());
    const hooks: { id: string; key: string }[] = [];
    for (let i = 0; i < 2; i++) {
      const key = randomUUID();
      const { data: hook } = await api.POST('/api/v1/webhooks', {
        body: { url: `${receiver.url}/${key}`, events: ['task.created'] },
      });
      receiver.setSecret(key, hook!.secret);
      hooks.push({ id: hook!.id, key });
    }
    const mine = () => receiver.deliveries.filter((d) => hooks.some((h) => h.key === d.key));
    // The allowance is first spent after this instant: the bounds below count from it, not from the
    // first arrival, whose own latency (the job's fetch, the send) would shrink the gap measured.
    const before = Date.now();
    // 11 changes × 2 endpoints: 22 deliveries, two more than the burst.
    for (let i = 0; i < 11; i++) await api.POST('/api/v1/tasks', { body: buildTask() });

    // The log says which wait and why, and when they go.
    const log = async () => (await Promise.all(hooks.map((h) => deliveriesOf(api, h.id)))).flat();
    let postponed: Awaited<ReturnType<typeof log>> = [];
    let seenAt = 0;
    for (
      const deadline = Date.now() + 10_000;
      postponed.length < 2 && Date.now() < deadline; // the two over the burst, when seen waiting together
      await new Promise((resolve) => setTimeout(resolve, 50))
    ) {
      const waiting = (await log()).filter((d) => d.status === 'pending' && d.postponed_reason === 'rate_limited');
      if (waiting.length > postponed.length) [postponed, seenAt] = [waiting, Date.now()];
    }
    expect(postponed.length).toBeGreaterThanOrEqual(1);
    for (const d of postponed) {
      expect(d).toMatchObject({ attempts_made: 0, attempts: [] });
      expect(Date.parse(d.next_attempt_at!)).toBeGreaterThan(seenAt - 1000);
    }

    // All of them arrive, once each, the two over the burst one interval apart.
    await receiver.waitFor(() => mine().length >= 22, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 500)); // room for a duplicate to show up
    const arrived = mine().sort((a, b) => a.at - b.at);
    expect(arrived).toHaveLength(22);
    expect(new Set(arrived.map((d) => `${d.key} ${d.id}`)).size).toBe(22); // an event goes to both endpoints under one webhook-id
    expect(arrived.every((d) => d.verified && d.answered === 200)).toBe(true);
    // The burst's 20 spend the minute: the 21st waits one interval, the 22nd two.
    expect(arrived[PER_MINUTE]!.at - before).toBeGreaterThanOrEqual(INTERVAL_MS);
    expect(arrived[PER_MINUTE + 1]!.at - before).toBeGreaterThanOrEqual(2 * INTERVAL_MS);
    // Each postponed one went no earlier than the turn the log gave it, and the turns are an interval apart.
    for (const d of postponed) {
      const key = hooks.find((h) => h.id === d.webhook_id)!.key;
      const sent = arrived.find((a) => a.key === key && a.id === d.event_id)!;
      expect(sent.at).toBeGreaterThanOrEqual(Date.parse(d.next_attempt_at!) - 1);
    }
    const turns = postponed.map((d) => Date.parse(d.next_attempt_at!)).sort((a, b) => a - b);
    for (let i = 1; i < turns.length; i++) expect(turns[i]! - turns[i - 1]!).toBeGreaterThanOrEqual(INTERVAL_MS - 1);

    // Postponing used up no attempt: each was sent in its first, and the reason is gone once sent.
    const ended = await log();
    expect(ended.every((d) => d.status === 'succeeded' && d.attempts_made === 1 && d.postponed_reason === null)).toBe(
      true,
    );
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(
      Number(/^webhook_delivery_postponements_total\{reason="rate_limited"\} (\d+)/m.exec(metrics)?.[1]),
    ).toBeGreaterThanOrEqual(2);
  }, 40_000);
});
