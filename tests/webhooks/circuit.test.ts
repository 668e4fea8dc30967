import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { buildTask } from '../helpers/factories.js';
import { deliveriesOf, until } from '../helpers/webhook-deliveries.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/**
 * The circuit breaker, end to end with a real receiver: an endpoint whose attempts keep timing out
 * gets none for a while (its deliveries wait, saying why, without using up their retries), then one
 * probe; a probe that times out too opens the circuit for twice as long; one that is answered
 * closes it, and every delivery that waited is sent.
 */
let server: TestServer;
let receiver: Receiver;

const TIMEOUT_MS = 600;
const OPEN_MS = 1000;

beforeAll(async () => {
  receiver = await startReceiver();
  server = await startServer({
    ownDatabase: true,
    webhooks: {
      runWorker: true,
      concurrency: 4,
      endpointConcurrency: 1,
      ownerConcurrency: 3,
      timeoutMs: TIMEOUT_MS,
      pollMs: 100,
      circuitTimeouts: 2,
      circuitOpenSeconds: OPEN_MS / 1000,
      retrySchedule: [1, 1],
    },
  });
});
afterAll(async () => {
  await receiver.close();
  await server.close();
});

describe('an endpoint that keeps timing out', () => {
  it('is skipped while its circuit is open, longer each time, and its deliveries are sent once it answers, no retry used up by the wait', async () => {
    const api = server.client(await server.tokenFor());
    const key = randomUUID();
    const { data: hook } = await api.POST('/api/v1/webhooks', {
      body: { url: `${receiver.url}/${key}`, events: ['task.created'] },
    });
    receiver.setSecret(key, hook!.secret);
    const mine = () => receiver.deliveries.filter((d) => d.key === key);
    // The first three requests hang: two attempts (one at a time: endpointConcurrency 1, so the
    // order is certain), whose timeouts open the circuit, then the first probe, which opens it again.
    receiver.holdNext(key, 3);
    for (let i = 0; i < 6; i++) await api.POST('/api/v1/tasks', { body: buildTask() });

    // While it is open, the log shows deliveries waiting for it, not attempted.
    const waiting = await until(
      () => deliveriesOf(api, hook!.id),
      (ds) => ds.some((d) => d.postponed_reason === 'circuit_open' && d.attempts_made === 0),
    );
    const held = waiting.find((d) => d.postponed_reason === 'circuit_open' && d.attempts_made === 0)!;
    expect(held).toMatchObject({ status: 'pending', attempts: [] });
    expect(Date.parse(held.next_attempt_at!)).toBeGreaterThan(Date.now() - 2 * OPEN_MS);

    const done = await until(
      () => deliveriesOf(api, hook!.id),
      (ds) => ds.length === 6 && ds.every((d) => d.status === 'succeeded'),
      20_000,
    );
    const requests = mine().sort((a, b) => a.at - b.at);
    // Three timeouts, then each of the six delivered once: no attempt but those the receiver saw.
    expect(requests.map((d) => d.answered)).toEqual([undefined, undefined, undefined, 200, 200, 200, 200, 200, 200]);
    expect(done.reduce((sum, d) => sum + d.attempts_made, 0)).toBe(9);
    expect(done.flatMap((d) => d.attempts).filter((a) => a.error === 'timeout')).toHaveLength(3);
    // Each delivery's attempts are its timeouts and then its success: waiting out the open circuit
    // (about 3 s, longer than the two retries of the schedule take) used up no retry.
    for (const d of done)
      expect(d.attempts.map((a) => a.status_code ?? a.error)).toEqual([
        ...d.attempts.filter((a) => a.error === 'timeout').map(() => 'timeout'),
        200,
      ]);
    expect(done.filter((d) => d.attempts_made === 1).length).toBeGreaterThanOrEqual(3);
    expect(done.every((d) => d.postponed_reason === null)).toBe(true);
    // Nothing was sent while the circuit was open: the first probe came an open period after the
    // second timeout, the second twice that after the first probe timed out.
    const [, second, probe, answered] = requests;
    expect(probe!.at - second!.endedAt!).toBeGreaterThanOrEqual(OPEN_MS - 100);
    expect(answered!.at - probe!.endedAt!).toBeGreaterThanOrEqual(2 * OPEN_MS - 100);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(Number(/^webhook_endpoint_circuit_opens_total (\d+)/m.exec(metrics)?.[1])).toBe(2);
    expect(
      Number(/^webhook_delivery_postponements_total\{reason="circuit_open"\} (\d+)/m.exec(metrics)?.[1]),
    ).toBeGreaterThanOrEqual(4);
  }, 40_000);

  it('closes when its owner changes its URL (or enables it): the deliveries held for it go at once', async () => {
    const api = server.client(await server.tokenFor());
    const [broken, fixed] = [randomUUID(), randomUUID()];
    const { data: hook } = await api.POST('/api/v1/webhooks', {
      body: { url: `${receiver.url}/${broken}`, events: ['task.created'] },
    });
    receiver.setSecret(fixed, hook!.secret);
    // As the worker leaves it after timeouts in a row: open for an hour.
    await sql`update webhook_endpoints set consecutive_timeouts = 2, circuit_trips = 6, circuit_open_until = now() + interval '1 hour' where id = ${hook!.id}`.execute(
      server.database.db,
    );
    await api.POST('/api/v1/tasks', { body: buildTask() });
    const [held] = await until(
      () => deliveriesOf(api, hook!.id),
      ([d]) => d?.postponed_reason === 'circuit_open',
    );
    expect(Date.parse(held!.next_attempt_at!)).toBeGreaterThan(Date.now() + 3_000_000);

    await api.PATCH('/api/v1/webhooks/{webhookId}', {
      params: { path: { webhookId: hook!.id } },
      body: { url: `${receiver.url}/${fixed}` },
    });
    await receiver.waitFor((ds) => ds.some((d) => d.key === fixed), 5000);
    const [sent] = await until(
      () => deliveriesOf(api, hook!.id),
      ([d]) => d?.status === 'succeeded',
    );
    expect(sent).toMatchObject({ attempts_made: 1, postponed_reason: null });
  });
});
