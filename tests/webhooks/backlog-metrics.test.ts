import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { sql, type InsertObject } from 'kysely';
import { Registry } from 'prom-client';
import type { TasksClient } from '../../packages/client/src/index.js';
import type { Database } from '../../src/db/database.js';
import type { DB } from '../../src/db/schema.js';
import { readWebhookBacklog, webhookBacklogMetrics, type WebhookBacklog } from '../../src/webhooks/jobs/backlog.js';
import { buildTask } from '../helpers/factories.js';
import { deliveriesOf, until } from '../helpers/webhook-deliveries.js';
import { captureLogs } from '../helpers/logs.js';
import { refusedPort } from '../helpers/refused-port.js';
import { scratchDatabase, startServer, testDatabase, type TestServer } from '../helpers/server.js';

/**
 * The webhook backlog on /metrics, end to end: a real server running the worker in-process, a
 * real database (on PostgreSQL one of its own, so that only this file's deliveries are counted),
 * and endpoints that never answer or refuse connections, so that deliveries stay pending.
 * `webhook_deliveries_pending` counts every pending delivery; the oldest age counts only the ones
 * that are due (a retry scheduled later, or one postponed by an open circuit, adds none), and grows
 * while due ones are not sent.
 */
const TOKEN = 'backlog-metrics-token-0123456789';
const PENDING = 'webhook_deliveries_pending';
const AGE = 'webhook_oldest_pending_delivery_age_seconds';

let server: TestServer;
/** Accepts connections and never answers: attempts to it hang until their timeout. */
let silent: Server;
const silentSockets = new Set<Socket>();
/** A loopback port nothing listens on: attempts to it are refused at once. */
let closedPort: number;

/** The server's backlog cache here: BACKLOG_CACHE_MS shortened, so that the test does not wait out 5 s readings. */
const CACHE_MS = 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Long enough for the next scrape to read the backlog again rather than the cached reading. */
const nextReading = () => sleep(CACHE_MS + 200);

beforeAll(async () => {
  silent = createServer((socket) => {
    silentSockets.add(socket);
    socket.on('close', () => silentSockets.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  closedPort = await refusedPort();

  server = await startServer({
    ownDatabase: true,
    metricsToken: TOKEN,
    webhooks: {
      runWorker: true,
      concurrency: 4,
      ownerConcurrency: 3,
      // One attempt at a time per endpoint: behind a hanging one, the others wait due in the outbox.
      endpointConcurrency: 1,
      timeoutMs: 60_000,
      circuitTimeouts: 1000,
      retrySchedule: [600],
      pollMs: 100,
      backlogCacheMs: CACHE_MS,
    },
  });
});
afterAll(async () => {
  // The hanging attempts end now (their connection reset), so the worker stops at once.
  for (const socket of silentSockets) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
  await server.close();
});

async function scrape(): Promise<{ status: number; text: string; pending?: number; age?: number }> {
  const response = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  const sample = (name: string) => {
    const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    return match === null ? undefined : Number(match[1]);
  };
  return { status: response.status, text, pending: sample(PENDING), age: sample(AGE) };
}

const hooks: { api: TasksClient; id: string }[] = [];
async function endpoint(url: string): Promise<{ api: TasksClient; id: string }> {
  const api = server.client(await server.tokenFor());
  const { data, response } = await api.POST('/api/v1/webhooks', { body: { url, events: ['task.created'] } });
  expect(response.status).toBe(201);
  const hook = { api, id: data!.id };
  hooks.push(hook);
  return hook;
}

describe('the webhook backlog on /metrics', () => {
  it('is 0 pending and 0 s old when nothing is pending: two gauges, one unlabelled sample each', async () => {
    const { status, text, pending, age } = await scrape();
    expect(status).toBe(200);
    expect(pending).toBe(0);
    expect(age).toBe(0);
    expect(text).toContain(`# TYPE ${PENDING} gauge\n`);
    expect(text).toContain(`# TYPE ${AGE} gauge\n`);
    // No labels: one sample each.
    expect(text.split('\n').filter((line) => line.startsWith(PENDING))).toHaveLength(1);
    expect(text.split('\n').filter((line) => line.startsWith(AGE))).toHaveLength(1);
  });

  it('counts a delivery waiting for a later retry, and one postponed by an open circuit, as pending but not late', async () => {
    // Refused at once: the attempt is recorded, and its retry is 10 minutes away.
    const retrying = await endpoint(`http://127.0.0.1:${closedPort}/refused`);
    await retrying.api.POST('/api/v1/tasks', { body: buildTask() });
    // Its endpoint's circuit open for an hour (as the worker leaves it after timeouts in a row):
    // the relay postpones the delivery to then, without an attempt.
    const held = await endpoint(`http://127.0.0.1:${closedPort}/held`);
    await sql`update webhook_endpoints set consecutive_timeouts = 1000, circuit_trips = 6, circuit_open_until = now() + interval '1 hour' where id = ${held.id}`.execute(
      server.database.db,
    );
    await held.api.POST('/api/v1/tasks', { body: buildTask() });

    await until(
      () => deliveriesOf(retrying.api, retrying.id),
      ([d]) => d?.attempts_made === 1 && d.status === 'pending',
    );
    await until(
      () => deliveriesOf(held.api, held.id),
      ([d]) => d?.postponed_reason === 'circuit_open' && d.attempts_made === 0,
    );
    await nextReading();
    const { pending, age } = await scrape();
    expect(pending).toBe(2);
    expect(age).toBe(0);
  }, 30_000);

  it('shows the oldest due delivery getting older while an endpoint hangs and the rest wait behind it', async () => {
    const hanging = await endpoint(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/hangs`);
    const first = Date.now();
    for (let i = 0; i < 3; i++) await hanging.api.POST('/api/v1/tasks', { body: buildTask() });
    // The first attempt is under way (and hangs); the two others are due and wait for the endpoint.
    await until(
      async () => silentSockets.size,
      (n) => n >= 1,
    );

    await nextReading();
    const before = await scrape();
    const read = Date.now();
    expect(before.pending).toBeGreaterThanOrEqual(3);
    expect(before.pending).toBe(5); // with the two of the test before
    // Due since the first task was created: at least the cache period ago, at most since `first`.
    expect(before.age).toBeGreaterThanOrEqual((CACHE_MS - 500) / 1000);
    expect(before.age).toBeLessThanOrEqual((read - first) / 1000 + 1);

    await nextReading();
    const after = await scrape();
    expect(after.pending).toBe(5);
    expect(after.age! - before.age!).toBeGreaterThanOrEqual((CACHE_MS - 500) / 1000);
    const [d] = await deliveriesOf(hanging.api, hanging.id);
    expect(d).toMatchObject({ status: 'pending', attempts_made: 0 }); // nothing recorded: stuck, not retrying
  }, 40_000);

  it('is 0 again once nothing is pending', async () => {
    for (const { api, id } of hooks.splice(0)) {
      // Deleting an endpoint deletes its deliveries.
      const { response } = await api.DELETE('/api/v1/webhooks/{webhookId}', { params: { path: { webhookId: id } } });
      expect(response.status).toBe(204);
    }
    const { pending, age } = await until(scrape, (m) => m.pending === 0, CACHE_MS + 5000);
    expect(pending).toBe(0);
    expect(age).toBe(0);
  }, 30_000);

  it('leaves both gauges out, and /metrics whole, while the query cannot be answered; one warning, then back', async () => {
    await nextReading();
    const before = server.logs.length;
    // The table locked: on PostgreSQL the query waits and its statement timeout ends it; on PGlite
    // (one connection) it waits its turn behind this transaction, and the scrape stops waiting.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = server.database.db.transaction().execute(async (trx) => {
      await sql`lock table webhook_deliveries in access exclusive mode`.execute(trx);
      locked();
      await released;
    });
    await isLocked;
    let failed: Awaited<ReturnType<typeof scrape>>;
    const started = Date.now();
    try {
      failed = await scrape();
    } finally {
      release();
      await holder;
    }
    expect(Date.now() - started).toBeLessThan(5000);
    expect(failed.status).toBe(200);
    expect(failed.pending).toBeUndefined();
    expect(failed.age).toBeUndefined();
    expect(failed.text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(failed.text).toContain('# TYPE webhook_delivery_attempts_total counter');
    const warnings = () =>
      server.logs
        .slice(before)
        .filter((line) => line.level === 'warn' && String(line.message).startsWith('webhook backlog metrics not read'));
    expect(warnings()).toHaveLength(1);
    // PostgreSQL ends the statement itself (its statement timeout); PGlite cannot, the scrape's deadline does.
    expect(String(warnings()[0]!.error)).toMatch(
      process.env.TEST_DATABASE_URL ? /canceling statement due to statement timeout/ : /no answer within 2000 ms/,
    );

    await nextReading();
    const back = await scrape();
    expect(back).toMatchObject({ pending: 0, age: 0 });
    expect(warnings()).toHaveLength(1);
    expect(
      server.logs.slice(before).filter((line) => line.message === 'webhook backlog metrics are read again'),
    ).toHaveLength(1);
  }, 30_000);
});

describe('webhookBacklogMetrics', () => {
  /** A database of its own on PostgreSQL (another file's deliveries would be counted), a fresh PGlite otherwise. */
  let own: Awaited<ReturnType<typeof scratchDatabase>>;
  let database: Database;
  /** The backlog before this block wrote any. */
  let base: WebhookBacklog;
  beforeAll(async () => {
    own = await scratchDatabase();
    database = await testDatabase(own.url);
    base = await readWebhookBacklog(database.db);
  });
  afterAll(async () => {
    await database.close();
    await own.drop();
  });

  it('warns once per streak of failures, and shares one query between scrapes while it runs', async () => {
    const { logger, lines } = captureLogs();
    const registry = new Registry();
    let mode: 'real' | 'failing' | 'hanging' = 'real';
    let reads = 0;
    let hung: (() => void) | undefined;
    webhookBacklogMetrics({
      db: database.db,
      registry,
      logger,
      cacheMs: 0,
      read: (db) => {
        reads++;
        if (mode === 'failing') return Promise.reject(new Error('boom'));
        if (mode === 'hanging')
          return new Promise<WebhookBacklog>((resolve) => {
            hung = () => resolve({ pending: 7, oldestDueAgeSeconds: 1 });
          });
        return readWebhookBacklog(db);
      },
    });
    const sample = async () => {
      const text = await registry.metrics();
      const value = (name: string) => {
        const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
        return match === null ? undefined : Number(match[1]);
      };
      return { pending: value(PENDING), age: value(AGE) };
    };
    const warnings = () => lines.filter((line) => line.level === 'warn');

    const real = await sample();
    expect(real.pending).toBeGreaterThanOrEqual(0);
    expect(real.age).toBeGreaterThanOrEqual(0);
    expect(reads).toBe(1); // both gauges of one scrape from one reading

    mode = 'failing';
    for (let i = 0; i < 3; i++) expect(await sample()).toEqual({ pending: undefined, age: undefined });
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ error: 'Error: boom' });

    mode = 'real';
    expect((await sample()).pending).toBeGreaterThanOrEqual(0);
    expect(lines.filter((line) => line.message === 'webhook backlog metrics are read again')).toHaveLength(1);

    // A reading that never comes: the scrape gives up on it (2 s), the next one waits for the same
    // reading rather than starting another, and when it comes, it is used.
    mode = 'hanging';
    reads = 0;
    const started = Date.now();
    expect(await sample()).toEqual({ pending: undefined, age: undefined });
    expect(Date.now() - started).toBeLessThan(4000);
    const second = sample();
    await sleep(100);
    hung!();
    expect(await second).toEqual({ pending: 7, age: 1 });
    expect(reads).toBe(1);
    expect(warnings()).toHaveLength(2); // a new streak
  }, 20_000);

  it("counts every owner's pending deliveries, and dates the oldest due one, admitted or not, from its next attempt time", async () => {
    const owners = [`user-${randomUUID()}`, `user-${randomUUID()}`, `user-${randomUUID()}`];
    const endpoints = await database.db
      .insertInto('webhook_endpoints')
      .values(
        owners.map((owner) => ({
          owner_id: owner,
          url: 'https://example.test/hook',
          events: ['task.created'],
          secret: 'whsec_test',
        })),
      )
      .returning(['id', 'owner_id'])
      .execute();
    const row = (
      i: number,
      fields: Partial<InsertObject<DB, 'webhook_deliveries'>>,
    ): InsertObject<DB, 'webhook_deliveries'> => ({
      owner_id: endpoints[i]!.owner_id,
      endpoint_id: endpoints[i]!.id,
      event_id: randomUUID(),
      event_type: 'task.created',
      payload: '{}',
      ...fields,
    });
    const ago = (seconds: number) => sql<Date>`now() - make_interval(secs => ${seconds})`;
    await database.db
      .insertInto('webhook_deliveries')
      .values([
        // In the outbox, due for 100 s.
        row(0, { next_attempt_at: ago(100) }),
        // Another owner's, admitted to the job queue, due for 200 s: its wait in the queue counts.
        row(1, { next_attempt_at: ago(200), queued: true, queued_at: ago(150) }),
        // A retry, or one postponed by the rate limit, an hour ahead: pending, not due.
        row(2, { next_attempt_at: ago(-3600), attempts_made: 1, postponed_reason: 'rate_limited' }),
        // Ended long ago: neither.
        row(2, { status: 'failed', next_attempt_at: null, attempts_made: 3, created_at: ago(5000) }),
      ])
      .execute();
    const backlog = await readWebhookBacklog(database.db);
    expect(backlog.pending).toBe(base.pending + 3);
    expect(backlog.oldestDueAgeSeconds).toBeGreaterThanOrEqual(Math.max(200, base.oldestDueAgeSeconds));
    expect(backlog.oldestDueAgeSeconds).toBeLessThan(Math.max(200, base.oldestDueAgeSeconds) + 10);
  });
});
