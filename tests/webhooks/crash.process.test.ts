import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { components } from '../../generated/api.js';
import { hs256Token } from '../../scripts/server-process.js';
import { scratchDatabase } from '../helpers/server.js';
import { entry, migratedPgliteDir, startMain } from '../helpers/process.js';
import { startReceiver, type Delivery, type Receiver } from '../helpers/webhook-receiver.js';

/** The id of the task whose event a delivery carries. */
const taskIdOf = (delivery: Delivery) => (delivery.body as components['schemas']['WebhookTaskEvent']).data.id;

/**
 * Crash safety of deliveries, with real processes killed by SIGKILL (no shutdown code runs):
 * events pending in the outbox, queued, and in flight to the receiver when the process dies are
 * all delivered after a restart — at least once, and a duplicate only ever under the same
 * `webhook-id`.
 */
const TASKS = 30;
let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(() => receiver.close());

const killed = async (child: ChildProcess, exited: Promise<unknown>) => {
  child.kill('SIGKILL');
  await exited;
};

/**
 * Creates TASKS tasks for a user subscribed to task.created on the receiver, which holds every
 * request unanswered; resolves once `inFlight` deliveries are being held, with the rest queued or
 * still in the outbox, and nothing delivered.
 */
async function eventsInFlight(url: string, secret: string, inFlight: number) {
  const token = await hs256Token(secret, `crash-${randomUUID()}`, '10m');
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const key = randomUUID();
  const hook = await fetch(`${url}/api/v1/webhooks`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ url: `${receiver.url}/${key}`, events: ['task.created'] }),
  });
  expect(hook.status).toBe(201);
  receiver.setSecret(key, ((await hook.json()) as { secret: string }).secret);
  receiver.holdNext(key, Number.MAX_SAFE_INTEGER);
  const ids: string[] = [];
  for (let i = 0; i < TASKS; i++) {
    const created = await fetch(`${url}/api/v1/tasks`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ title: `crash ${i}` }),
    });
    expect(created.status).toBe(201);
    ids.push(((await created.json()) as { id: string }).id);
  }
  await receiver.waitFor(() => receiver.deliveries.filter((d) => d.key === key).length >= inFlight, 30_000);
  expect(receiver.deliveries.filter((d) => d.key === key && d.answered !== undefined)).toEqual([]);
  return { key, ids };
}

/** Every task's event arrived, verified; duplicates (allowed) carry the webhook-id of their first copy. */
async function expectAllDelivered(key: string, ids: string[]) {
  const mine = () => receiver.deliveries.filter((d) => d.key === key && d.answered === 200);
  await receiver.waitFor(() => new Set(mine().map(taskIdOf)).size === ids.length, 60_000);
  const got = mine();
  expect(got.every((d) => d.verified)).toBe(true);
  expect(new Set(got.map(taskIdOf))).toEqual(new Set(ids));
  const idOf = new Map<string, string>();
  for (const d of receiver.deliveries.filter((x) => x.key === key)) {
    const first = idOf.get(taskIdOf(d)) ?? d.headers['webhook-id']!;
    idOf.set(taskIdOf(d), first);
    expect(d.headers['webhook-id']).toBe(first);
  }
}

describe('webhook deliveries survive kill -9', () => {
  it('of the API running its worker in-process: pending, queued and in-flight events are all delivered after a restart', async () => {
    const secret = randomBytes(32).toString('base64url');
    const dataDir = migratedPgliteDir('tasks-webhook-crash-');
    const scratch = await scratchDatabase();
    const env = {
      NODE_ENV: 'development',
      AUTH_BUILTIN: 'false',
      JWT_SECRET: secret,
      WEBHOOK_TIMEOUT_MS: '1000',
      WEBHOOK_RETRY_SCHEDULE: '1,1,1',
      ...(scratch.url
        ? {
            DATABASE_URL: scratch.url,
            DATABASE_PREPARED_STATEMENTS: process.env.TEST_DATABASE_PREPARED_STATEMENTS ?? 'on',
          }
        : { PGLITE_DIR: dataDir }),
    };
    try {
      const first = await startMain(env);
      const { key, ids } = await eventsInFlight(first.url, secret, 3);
      await killed(first.child, first.exited);
      receiver.holdNext(key, 0);

      const second = await startMain(env);
      try {
        await expectAllDelivered(key, ids);
      } finally {
        second.child.kill('SIGTERM');
        await second.exited;
      }
    } finally {
      await scratch.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);

  const onPostgres = process.env.TEST_DATABASE_URL ? it : it.skip;
  onPostgres(
    'of a separate worker (npm run worker): another worker delivers what it held',
    async () => {
      const secret = randomBytes(32).toString('base64url');
      const scratch = await scratchDatabase();
      const env = {
        NODE_ENV: 'development',
        AUTH_BUILTIN: 'false',
        JWT_SECRET: secret,
        DATABASE_URL: scratch.url!,
        WEBHOOK_TIMEOUT_MS: '1000',
        WEBHOOK_RETRY_SCHEDULE: '1,1,1',
        DATABASE_PREPARED_STATEMENTS: process.env.TEST_DATABASE_PREPARED_STATEMENTS ?? 'on',
      };
      const startWorker = () => {
        const child = spawn(process.execPath, entry('src/worker.ts'), {
          env: { ...process.env, NODE_OPTIONS: '', LOG_FORMAT: 'json', ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (chunk) => (output += chunk));
        child.stderr.on('data', (chunk) => (output += chunk));
        return { child, exited: new Promise((resolve) => child.on('exit', resolve)), output: () => output };
      };
      const api = await startMain({ ...env, WEBHOOK_WORKER: 'off' });
      try {
        const worker = startWorker();
        const { key, ids } = await eventsInFlight(api.url, secret, 3);
        await killed(worker.child, worker.exited);
        receiver.holdNext(key, 0);
        const replacement = startWorker();
        try {
          await expectAllDelivered(key, ids);
        } finally {
          replacement.child.kill('SIGTERM');
          expect(await replacement.exited).toBe(0);
        }
      } finally {
        api.child.kill('SIGTERM');
        await api.exited;
        await scratch.drop();
      }
    },
    120_000,
  );
});
