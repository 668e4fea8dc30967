import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { defaultConfig } from '../../src/config.js';
import { deliveryRunner, type Send } from '../../src/webhooks/jobs/deliver.js';
import type { SendResult } from '../../src/webhooks/sender.js';
import { buildTask } from '../helpers/factories.js';
import { captureLogs } from '../helpers/logs.js';
import { startServer, type TestServer } from '../helpers/server.js';

/**
 * One attempt at a time per delivery: the runner claims a delivery before sending, so a second job
 * for it (a redelivery beside a scheduled retry, a job the queue ran again because its worker was
 * slow) sends nothing while the first is under way. No worker runs here: the runner is driven
 * directly against the real database, with a sender that counts what it is asked to send.
 */
let server: TestServer;
const config = { ...defaultConfig().webhooks, timeoutMs: 2000 };

beforeAll(async () => {
  server = await startServer({ ownDatabase: true });
});
afterAll(async () => {
  await server.close();
});

/** A sender that answers `result` after `ms`, and records the headers of every send. */
function countingSender(ms: number, result: Omit<SendResult, 'durationMs'> = { ok: true, statusCode: 204 }) {
  const sent: Record<string, string>[] = [];
  const send: Send = async (_url, _body, headers) => {
    sent.push(headers);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { ...result, durationMs: ms };
  };
  return { sent, send };
}

/** A user, an endpoint subscribed to task.created and a task: one pending delivery; its id. */
async function oneDelivery(): Promise<{ id: string; webhookId: string; api: ReturnType<TestServer['client']> }> {
  const api = server.client(await server.tokenFor());
  const { data: hook } = await api.POST('/api/v1/webhooks', {
    body: { url: 'https://hooks.example.com/x', events: ['task.created'] },
  });
  await api.POST('/api/v1/tasks', { body: buildTask() });
  const { data } = await api.GET('/api/v1/webhooks/{webhookId}/deliveries', {
    params: { path: { webhookId: hook!.id } },
  });
  return { id: data!.items[0]!.id, webhookId: hook!.id, api };
}

const runner = (send: Send) => deliveryRunner({ db: server.database.db, send, config, logger: captureLogs().logger });

describe('an attempt claims its delivery', () => {
  it('so two jobs for the same attempt running at once send it once', async () => {
    const { id } = await oneDelivery();
    const { sent, send } = countingSender(300);
    const run = runner(send);
    const outcomes = await Promise.all([run({ delivery: id, attempt: 1 }), run({ delivery: id, attempt: 1 })]);
    expect(outcomes.sort()).toEqual(['skipped', 'succeeded']);
    expect(sent).toHaveLength(1);
  });

  it('so a redelivery’s job and a scheduled retry’s job running at once send one attempt', async () => {
    const { id } = await oneDelivery();
    const { sent, send } = countingSender(300, { ok: false, statusCode: 503 });
    const run = runner(send);
    expect(await run({ delivery: id, attempt: 1 })).toBe('retrying');
    // Attempt 2 under the retry's job and under the redelivery's job (another round), together.
    const outcomes = await Promise.all([run({ delivery: id, attempt: 2 }), run({ delivery: id, attempt: 2 })]);
    expect(outcomes.sort()).toEqual(['retrying', 'skipped']);
    expect(sent).toHaveLength(2);
  });

  it('and a dead worker’s claim lapses: the queue’s rerun of its job sends', async () => {
    const { id } = await oneDelivery();
    const { sent, send } = countingSender(1);
    const claim = (at: string) =>
      sql`update webhook_deliveries set claimed_until = now() + ${sql.raw(`interval '${at}'`)} where id = ${id}`.execute(
        server.database.db,
      );
    await claim('10 seconds'); // a worker is (or was, a moment ago) sending it
    expect(await runner(send)({ delivery: id, attempt: 1 })).toBe('skipped');
    await claim('-1 second'); // that worker died; its claim ran out
    expect(await runner(send)({ delivery: id, attempt: 1 })).toBe('succeeded');
    expect(sent).toHaveLength(1);
    const [row] = await server.database.db
      .selectFrom('webhook_deliveries')
      .select(['claimed_until', 'status'])
      .where('id', '=', id)
      .execute();
    expect(row).toEqual({ claimed_until: null, status: 'succeeded' });
  });
});

describe('what an attempt records and signs', () => {
  it('a success ends the endpoint’s failing streak', async () => {
    const { id, webhookId } = await oneDelivery();
    await sql`update webhook_endpoints set failing_since = now() - interval '1 hour' where id = ${webhookId}`.execute(
      server.database.db,
    );
    expect(await runner(countingSender(1).send)({ delivery: id, attempt: 1 })).toBe('succeeded');
    const endpoint = await server.database.db
      .selectFrom('webhook_endpoints')
      .select(['failing_since', 'enabled'])
      .where('id', '=', webhookId)
      .executeTakeFirstOrThrow();
    expect(endpoint).toEqual({ failing_since: null, enabled: true });
  });

  it('signs with the previous secret too only while its grace period lasts', async () => {
    const signatures = async (graceEnds: string) => {
      const { id, webhookId } = await oneDelivery();
      await sql`update webhook_endpoints set previous_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', previous_secret_expires_at = now() + ${sql.raw(`interval '${graceEnds}'`)} where id = ${webhookId}`.execute(
        server.database.db,
      );
      const { sent, send } = countingSender(1);
      await runner(send)({ delivery: id, attempt: 1 });
      return sent[0]!['webhook-signature']!.split(' ').length;
    };
    expect(await signatures('1 hour')).toBe(2);
    expect(await signatures('-1 second')).toBe(1);
  });
});

describe('redeliver', () => {
  it('leaves a delivery that is due (never attempted, or mid-attempt) as it is, and starts a round for one waiting for a retry', async () => {
    const { id, webhookId, api } = await oneDelivery();
    const redeliver = async () =>
      await api.POST('/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver', {
        params: { path: { webhookId, deliveryId: id } },
      });
    const { data: due, response } = await redeliver();
    expect(response.status).toBe(202);
    expect(due).toMatchObject({ id, status: 'pending', attempts_made: 0 });

    const { send } = countingSender(1, { ok: false, statusCode: 500 });
    expect(await runner(send)({ delivery: id, attempt: 1 })).toBe('retrying');
    const row = () =>
      server.database.db
        .selectFrom('webhook_deliveries')
        .select(['retry_base', 'next_attempt_at'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
    const waiting = await row();
    expect(waiting.next_attempt_at!.getTime()).toBeGreaterThan(Date.now());
    const { data: now } = await redeliver();
    expect(now).toMatchObject({ status: 'pending', attempts_made: 1 });
    expect(Date.parse(now!.next_attempt_at!)).toBeLessThanOrEqual(Date.now());
    expect((await row()).retry_base).toBe(1);
    // Due now: a second redelivery changes nothing.
    const { data: again } = await redeliver();
    expect(again!.next_attempt_at).toBe(now!.next_attempt_at);
  });

  it('does not send a task.due before its time', async () => {
    const api = server.client(await server.tokenFor());
    const { data: hook } = await api.POST('/api/v1/webhooks', {
      body: { url: 'https://hooks.example.com/x', events: ['task.due'] },
    });
    const dueAt = new Date(Date.now() + 86_400_000).toISOString();
    await api.POST('/api/v1/tasks', { body: buildTask({ due_at: dueAt }) });
    const { data: page } = await api.GET('/api/v1/webhooks/{webhookId}/deliveries', {
      params: { path: { webhookId: hook!.id } },
    });
    const { data: same } = await api.POST('/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver', {
      params: { path: { webhookId: hook!.id, deliveryId: page!.items[0]!.id } },
    });
    expect(same).toMatchObject({ status: 'pending', attempts_made: 0, next_attempt_at: dueAt });
  });
});
