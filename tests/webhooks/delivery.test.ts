import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import type { components } from '../../generated/api.js';
import type { TasksClient } from '../../packages/client/src/index.js';
import { buildTask } from '../helpers/factories.js';
import { deliveriesOf } from '../helpers/webhook-deliveries.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { startReceiver, type Delivery, type Receiver } from '../helpers/webhook-receiver.js';

/** A delivery's body read as the payload the contract describes. */
const eventOf = (delivery: Delivery) =>
  delivery.body as components['schemas']['WebhookTaskEvent'] | components['schemas']['WebhookTestEvent'];

/**
 * Deliveries end to end: the API writes events with task changes, the worker (pg-boss, in this
 * process) signs and sends them to a real receiver on loopback, which verifies each signature
 * with the `standardwebhooks` library as a receiver in production would.
 */
let server: TestServer;
let receiver: Receiver;

/** `evil.test` resolves to the cloud metadata address; everything else as the system resolves it. */
const lookup: LookupFunction = (hostname, options, callback) => {
  if (hostname === 'evil.test') {
    if ((options as { all?: boolean }).all)
      (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
        { address: '169.254.169.254', family: 4 },
      ]);
    else callback(null, '169.254.169.254', 4);
    return;
  }
  if (hostname === 'localhost' || hostname === '127.0.0.1') {
    if ((options as { all?: boolean }).all)
      (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
        { address: '127.0.0.1', family: 4 },
      ]);
    else callback(null, '127.0.0.1', 4);
    return;
  }
  callback(Object.assign(new Error(`test resolver: no such host ${hostname}`), { code: 'ENOTFOUND' }), '', 4);
};

beforeAll(async () => {
  receiver = await startReceiver();
  server = await startServer({
    // On PostgreSQL a database of its own: another file's worker must not run this file's deliveries (with its own settings).
    ownDatabase: true,
    webhooks: { runWorker: true, lookup, retrySchedule: [1, 1], timeoutMs: 1500, pollMs: 100 },
  });
});
afterAll(async () => {
  await server.close();
  await receiver.close();
});

type EventType = 'task.created' | 'task.updated' | 'task.completed' | 'task.deleted' | 'task.due';

/** A user with one endpoint on the receiver, at a path of its own (`key`) that the receiver files its requests under. */
async function subscriber(events: EventType[]) {
  const api: TasksClient = server.client(await server.tokenFor());
  const key = randomUUID();
  const { data: hook, response } = await api.POST('/api/v1/webhooks', {
    body: { url: `${receiver.url}/${key}`, events },
  });
  expect(response.status).toBe(201);
  receiver.setSecret(key, hook!.secret);
  return { api, hook: hook!, key, mine: () => receiver.deliveries.filter((d) => d.key === key) };
}

async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('delivery', () => {
  it('sends each task event, signed per Standard Webhooks, with the task as it was', async () => {
    const { api, hook, mine } = await subscriber(['task.created', 'task.updated', 'task.completed', 'task.deleted']);
    const { data: task } = await api.POST('/api/v1/tasks', {
      body: buildTask({ title: 'Ship it', tags: ['release'] }),
    });
    const { data: done } = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task!.id } },
      body: { completed: true },
    });
    await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: task!.id } } });

    await receiver.waitFor(() => mine().length >= 4, 15_000);
    const got = mine();
    expect(got.every((d) => d.verified)).toBe(true);
    expect(got.map((d) => eventOf(d).type).sort()).toEqual([
      'task.completed',
      'task.created',
      'task.deleted',
      'task.updated',
    ]);
    const byType = Object.fromEntries(got.map((d) => [eventOf(d).type, eventOf(d)]));
    expect(byType['task.created']!.data).toEqual(task);
    expect(byType['task.completed']!.data).toEqual(done);
    expect(byType['task.deleted']!.data).toEqual(done);
    for (const delivery of got) {
      // The payload's id is the webhook-id header, for de-duplication.
      expect(eventOf(delivery).id).toBe(delivery.headers['webhook-id']);
      expect(Math.abs(Number(delivery.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
      // And it verifies with the library a receiver would use, not only our own check.
      expect(() => new Webhook(hook.secret).verify(delivery.raw, delivery.headers)).not.toThrow();
    }
    const log = await until(
      () => deliveriesOf(api, hook.id),
      (items) => items.every((d) => d.status === 'succeeded'),
    );
    expect(log.map((d) => [d.status, d.attempts_made, d.attempts[0]!.status_code])).toEqual(
      Array(4).fill(['succeeded', 1, 200]),
    );
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(
      Number(/^webhook_delivery_attempts_total\{outcome="succeeded"\} (\d+)/m.exec(metrics)?.[1]),
    ).toBeGreaterThanOrEqual(4);
  });

  it('sends webhook.test to the one endpoint asked', async () => {
    const { api, hook } = await subscriber(['task.created']);
    const { data } = await api.POST('/api/v1/webhooks/{webhookId}/test', { params: { path: { webhookId: hook.id } } });
    await receiver.waitFor(() => receiver.deliveries.some((d) => eventOf(d).id === data!.event_id), 10_000);
    const got = receiver.deliveries.find((d) => eventOf(d).id === data!.event_id)!;
    expect(got).toMatchObject({ verified: true, body: { type: 'webhook.test', data: { webhook_id: hook.id } } });
  });

  it('sends task.due at the due time', async () => {
    const { api, hook, mine } = await subscriber(['task.due']);
    const dueAt = new Date(Date.now() + 1500).toISOString();
    const { data: task } = await api.POST('/api/v1/tasks', { body: buildTask({ due_at: dueAt }) });
    await receiver.waitFor(() => mine().length > 0, 15_000);
    const [got] = mine();
    expect(hook.events).toEqual(['task.due']);
    expect(got!.body).toMatchObject({ type: 'task.due', timestamp: dueAt, data: { id: task!.id, due_at: dueAt } });
    expect(got!.at).toBeGreaterThanOrEqual(Date.parse(dueAt));
  });

  it('queues a delivery only when it is due: a task.due waits in the outbox until its time', async () => {
    const { api, hook } = await subscriber(['task.due']);
    await api.POST('/api/v1/tasks', { body: buildTask({ due_at: new Date(Date.now() + 30 * 60_000).toISOString() }) });
    await server.worker!.relay();
    const rows = await server.database.db
      .selectFrom('webhook_deliveries')
      .select(['queued', 'next_attempt_at'])
      .where('endpoint_id', '=', hook.id)
      .execute();
    expect(rows.map((row) => row.queued)).toEqual([false]);
  });

  it('retries a 500 with the same webhook-id until it succeeds, and records every attempt', async () => {
    const { api, hook, key, mine } = await subscriber(['task.created']);
    receiver.failNext(key, 2, 500);
    await api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => mine().length >= 3, 20_000);
    const got = mine();
    expect(new Set(got.map((d) => d.headers['webhook-id'])).size).toBe(1);
    expect(got.map((d) => d.answered)).toEqual([500, 500, 200]);
    const [delivery] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'succeeded',
    );
    expect(delivery!.attempts.map((a) => a.status_code)).toEqual([500, 500, 200]);
    expect(delivery!.attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
  });

  it('waits as long as a 429’s Retry-After asks when that is longer than the schedule’s delay', async () => {
    const { api, hook, mine } = await subscriber(['task.created']);
    receiver.mode('429', { retryAfter: '3' });
    try {
      await api.POST('/api/v1/tasks', { body: buildTask() });
      const [waiting] = await until(
        () => deliveriesOf(api, hook.id),
        ([d]) => d?.attempts_made === 1,
      );
      expect(waiting).toMatchObject({ status: 'pending', attempts: [expect.objectContaining({ status_code: 429 })] });
      // The schedule says 1 s (±20 %); the receiver asked for 3.
      expect(Date.parse(waiting!.next_attempt_at!) - Date.parse(waiting!.attempts[0]!.at)).toBeGreaterThanOrEqual(3000);
    } finally {
      receiver.mode('ok');
    }
    const [done] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'succeeded',
    );
    expect(done!.attempts.map((a) => a.status_code)).toEqual([429, 200]);
    expect(mine()[1]!.at - mine()[0]!.at).toBeGreaterThanOrEqual(2900);
  });

  it('redelivers at once a delivery that is waiting for a retry far ahead', async () => {
    const { api, hook, mine } = await subscriber(['task.created']);
    receiver.mode('429', { retryAfter: '3000' });
    let waiting: Awaited<ReturnType<typeof deliveriesOf>>[number] | undefined;
    try {
      await api.POST('/api/v1/tasks', { body: buildTask() });
      [waiting] = await until(
        () => deliveriesOf(api, hook.id),
        ([d]) => d?.attempts_made === 1,
      );
      expect(Date.parse(waiting!.next_attempt_at!)).toBeGreaterThan(Date.now() + 2_900_000);
    } finally {
      receiver.mode('ok');
    }
    // The retry, 50 minutes ahead, is queued in pg-boss already; the redelivery must not wait for it.
    await server.worker!.relay();
    const { response } = await api.POST('/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver', {
      params: { path: { webhookId: hook.id, deliveryId: waiting!.id } },
    });
    expect(response.status).toBe(202);
    const [done] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'succeeded',
    );
    expect(done!.attempts.map((a) => a.status_code)).toEqual([429, 200]);
    expect(new Set(mine().map((d) => d.headers['webhook-id'])).size).toBe(1);
  });

  it('stops at a 4xx (no retry), shows the delivery failed, and redelivers it on request', async () => {
    const { api, hook, key, mine } = await subscriber(['task.created']);
    receiver.failNext(key, 1, 410);
    await api.POST('/api/v1/tasks', { body: buildTask() });
    const [failed] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'failed',
    );
    expect(failed).toMatchObject({ status: 'failed', attempts_made: 1, next_attempt_at: null });
    expect(failed!.attempts[0]).toMatchObject({ status_code: 410 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(mine()).toHaveLength(1);

    const { data: again, response } = await api.POST('/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver', {
      params: { path: { webhookId: hook.id, deliveryId: failed!.id } },
    });
    expect(response.status).toBe(202);
    expect(again).toMatchObject({ id: failed!.id, status: 'pending' });
    const [redelivered] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'succeeded',
    );
    expect(redelivered!.attempts.map((a) => a.status_code)).toEqual([410, 200]);
    const sent = mine();
    expect(sent[1]!.headers['webhook-id']).toBe(sent[0]!.headers['webhook-id']);
    expect(sent[1]!.raw).toBe(sent[0]!.raw);
  });

  it('dead-letters after the last retry of the schedule', async () => {
    const { api, hook, key } = await subscriber(['task.created']);
    receiver.failNext(key, 10, 503);
    await api.POST('/api/v1/tasks', { body: buildTask() });
    const [dead] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'failed',
      20_000,
    );
    // The schedule has two retries: three attempts in all.
    expect(dead!.attempts.map((a) => a.status_code)).toEqual([503, 503, 503]);
    expect(dead!.next_attempt_at).toBeNull();
  });

  it('keeps an ended delivery in the log for the retention period, and a pending one until it ends', async () => {
    const { api, hook, key } = await subscriber(['task.created']);
    receiver.failNext(key, 1, 410);
    for (let i = 0; i < 3; i++) await api.POST('/api/v1/tasks', { body: buildTask() });
    const ended = await until(
      () => deliveriesOf(api, hook.id),
      (ds) => ds.length === 3 && ds.every((d) => d.status !== 'pending'),
    );
    const [failed, oldSucceeded, recent] = [
      ended.find((d) => d.status === 'failed')!,
      ...ended.filter((d) => d.status === 'succeeded'),
    ];
    // A pending delivery (a task.due a month ahead), written long ago like the two ended ones aged here.
    const db = server.database.db;
    await db
      .insertInto('webhook_deliveries')
      .columns(['owner_id', 'endpoint_id', 'event_id', 'event_type', 'payload', 'next_attempt_at'])
      .expression(
        db
          .selectFrom('webhook_deliveries')
          .select([
            'owner_id',
            'endpoint_id',
            sql<string>`gen_random_uuid()`.as('event_id'),
            sql<string>`'task.due'`.as('event_type'),
            'payload',
            sql<Date>`now() + interval '30 days'`.as('next_attempt_at'),
          ])
          .where('id', '=', recent!.id),
      )
      .execute();
    await db
      .updateTable('webhook_deliveries')
      .set({ updated_at: sql`now() - interval '31 days'` })
      .where('id', 'in', [failed.id, oldSucceeded!.id])
      .execute();
    await db
      .updateTable('webhook_deliveries')
      .set({ updated_at: sql`now() - interval '31 days'` })
      .where('endpoint_id', '=', hook.id)
      .where('status', '=', 'pending')
      .execute();

    expect(await server.worker!.purge()).toBe(2);
    const left = await deliveriesOf(api, hook.id);
    expect(left.map((d) => d.id)).toContain(recent!.id);
    expect(left.map((d) => d.status).sort()).toEqual(['pending', 'succeeded']);
  });

  it('signs with both secrets during a rotation’s grace period', async () => {
    const { api, hook, key, mine } = await subscriber(['task.created']);
    const { data: rotated } = await api.POST('/api/v1/webhooks/{webhookId}/rotate-secret', {
      params: { path: { webhookId: hook.id } },
    });
    receiver.setSecret(key, rotated!.secret);
    await api.POST('/api/v1/tasks', { body: buildTask() });
    await receiver.waitFor(() => mine().length > 0, 10_000);
    const got = mine()[0]!;
    expect(got.headers['webhook-signature']!.split(' ')).toHaveLength(2);
    const headers = got.headers;
    expect(() => new Webhook(rotated!.secret).verify(got.raw, headers)).not.toThrow();
    expect(() => new Webhook(hook.secret).verify(got.raw, headers)).not.toThrow();
  });

  it('refuses at connect time a name that resolves to the metadata address, and does not retry', async () => {
    const { api, hook } = await subscriber(['task.created']);
    // Registered pointing at the receiver, then moved to a name that resolves to 169.254.169.254
    // (a DNS record that changed after registration: only the check at connect time can catch it).
    await server.database.db
      .updateTable('webhook_endpoints')
      .set({ url: 'https://evil.test/hook' })
      .where('id', '=', hook.id)
      .execute();
    await api.POST('/api/v1/tasks', { body: buildTask() });
    const [refused] = await until(
      () => deliveriesOf(api, hook.id),
      ([d]) => d?.status === 'failed',
    );
    expect(refused!.attempts).toHaveLength(1);
    expect(refused!.attempts[0]).toMatchObject({ status_code: null });
    expect(refused!.attempts[0]!.error).toBe(
      'destination refused: evil.test resolves to a private or reserved address',
    );
  });

  it('disables an endpoint whose deliveries have failed for longer than the limit, with the reason', async () => {
    const { api, hook, key } = await subscriber(['task.created']);
    receiver.failNext(key, 10, 400);
    // Failing since long ago (as if for days), as the worker would have recorded it.
    await sql`update webhook_endpoints set failing_since = now() - interval '200 hours' where id = ${hook.id}`.execute(
      server.database.db,
    );
    await api.POST('/api/v1/tasks', { body: buildTask() });
    const disabled = await until(
      async () => (await api.GET('/api/v1/webhooks/{webhookId}', { params: { path: { webhookId: hook.id } } })).data!,
      (w) => !w.enabled,
    );
    expect(disabled).toMatchObject({ enabled: false, disabled_reason: expect.stringMatching(/failed/) });
    const { data: enabled } = await api.PATCH('/api/v1/webhooks/{webhookId}', {
      params: { path: { webhookId: hook.id } },
      body: { enabled: true },
    });
    expect(enabled).toMatchObject({ enabled: true, disabled_reason: null });
  });
});
