// npm run bench:webhooks [-- --quick]
//
// What webhooks cost the API, and how fast deliveries go: the built API (dist/) on PostgreSQL
// (BENCH_WEBHOOKS_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/tasks_webhooks_bench,
// created if missing, its tasks and webhook tables emptied first), driven by autocannon from this
// process on loopback, and a receiver in this process (node:http, reads each body, answers 204).
//
// 1. Enqueue: task creations at a fixed rate (1,000/s) from 32 connections, each request for a
//    random one of 200 users, for `seconds`, against the API with WEBHOOK_WORKER=off, in two
//    variants run alternately (`rounds` times each): `plain`, users without webhooks; `webhooks`,
//    users with one endpoint each subscribed to every event type, so each creation also writes a
//    delivery in its transaction (the outbox). The figure is the p99 of `webhooks` against `plain`
//    (target: at most 1.2×).
// 2. Delivery: the backlog the `webhooks` rounds left is then delivered by one worker process
//    (dist/src/worker.js, WEBHOOK_CONCURRENCY as set, default 8), timed from its start until no
//    delivery is pending: events/s. Every delivery must succeed.
// 3. In-process: the `webhooks` load against the API with its worker in-process (the default),
//    delivering while it serves: p99 and served rate, and how far deliveries lag behind.
//
// Writes bench/results/webhooks-latest.json and .md plus a dated JSON copy; --quick (2 s, one round)
// writes webhooks-quick-latest.* instead, so it never replaces a full run. Any non-2xx fails the run.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { openDatabase, type Database } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { projectRoot } from '../src/http/contract.js';
import { ensureDatabase, freePort, hs256Token, waitUntilServing } from '../scripts/server-process.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = values.quick;
const settings = { users: 200, rate: 1000, connections: 32, seconds: quick ? 2 : 10, rounds: quick ? 1 : 2 };
const databaseUrl =
  process.env.BENCH_WEBHOOKS_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tasks_webhooks_bench';
const root = projectRoot();

interface Load {
  rps: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  requests: number;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

function startProcess(script: string, env: Record<string, string>): { child: ChildProcess; exited: Promise<unknown> } {
  const child = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { child, exited: new Promise((resolve) => child.on('exit', resolve)) };
}

async function startApi(env: Record<string, string>) {
  const port = await freePort();
  const api = startProcess('dist/src/main.js', { ...env, PORT: String(port), HOST: '127.0.0.1' });
  const url = `http://127.0.0.1:${port}`;
  await waitUntilServing(`${url}/health/ready`, api.child, {
    timeoutMs: 20_000,
    failure: () => 'the API did not start',
  });
  return { url, ...api };
}

async function stop(proc: { child: ChildProcess; exited: Promise<unknown> }) {
  proc.child.kill('SIGTERM');
  await proc.exited;
}

/** Creations at the fixed rate for `seconds`, each for a random user of `tokens`. */
async function load(url: string, tokens: string[]): Promise<Load> {
  const latencies: number[] = [];
  let bad = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url,
        connections: settings.connections,
        overallRate: settings.rate,
        duration: settings.seconds,
        timeout: 10,
        requests: [
          {
            setupRequest: (request) => ({
              ...request,
              method: 'POST',
              path: '/api/v1/tasks',
              headers: {
                authorization: `Bearer ${tokens[Math.floor(Math.random() * tokens.length)]}`,
                'content-type': 'application/json',
              },
              body: JSON.stringify({ title: 'Webhook bench task', priority: 'high', tags: ['bench'] }),
            }),
          },
        ],
      },
      (error: Error | null, res) => (error ? reject(error) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode === 201) latencies.push(responseTime);
      else bad += 1;
    });
  });
  if (bad > 0 || result.errors > 0 || result.timeouts > 0)
    throw new Error(`${bad} non-201 answers, ${result.errors} errors, ${result.timeouts} timeouts`);
  latencies.sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 10) / 10;
  return {
    rps: Math.round(latencies.length / settings.seconds),
    p50_ms: r(percentile(latencies, 50)),
    p95_ms: r(percentile(latencies, 95)),
    p99_ms: r(percentile(latencies, 99)),
    requests: latencies.length,
  };
}

const pendingCount = async (database: Database) =>
  Number(
    (
      await sql<{ n: string }>`select count(*) as n from webhook_deliveries where status = 'pending'`.execute(
        database.db,
      )
    ).rows[0]!.n,
  );

async function waitDrained(database: Database, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await pendingCount(database)) > 0) {
    if (Date.now() > deadline) throw new Error(`deliveries still pending after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main(): Promise<number> {
  const started = Date.now();
  await ensureDatabase(databaseUrl);
  const database = await openDatabase({ url: databaseUrl, poolMax: 2 });
  await migrateToLatest(database.db);
  await sql`truncate tasks, webhook_endpoints, webhook_deliveries cascade`.execute(database.db);
  await sql`drop schema if exists pgboss cascade`.execute(database.db);

  let received = 0;
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received += 1;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

  const secret = randomBytes(32).toString('base64url');
  const plainUsers = Array.from({ length: settings.users }, (_, i) => `plain-user-${i + 1}`);
  const hookUsers = Array.from({ length: settings.users }, (_, i) => `hook-user-${i + 1}`);
  // Registered here rather than through the API: production refuses http and loopback endpoints.
  await database.db
    .insertInto('webhook_endpoints')
    .values(
      hookUsers.map((owner) => ({
        owner_id: owner,
        url: receiverUrl,
        events: ['task.created', 'task.updated', 'task.completed', 'task.deleted', 'task.due'],
        secret: `whsec_${randomBytes(32).toString('base64')}`,
      })),
    )
    .execute();
  const tokens = {
    plain: await Promise.all(plainUsers.map((s) => hs256Token(secret, s, '2h'))),
    webhooks: await Promise.all(hookUsers.map((s) => hs256Token(secret, s, '2h'))),
  };
  const env = {
    DATABASE_URL: databaseUrl,
    JWT_SECRET: secret,
    NODE_ENV: 'production',
    DATABASE_POOL_MAX: '10',
    WEBHOOK_ALLOWED_ADDRESSES: '127.0.0.1/32',
    LOG_LEVEL: 'warn',
  };
  process.stdout.write(
    `bench:webhooks: creations at ${settings.rate}/s from ${settings.connections} connections, ${settings.seconds} s × ${settings.rounds} round(s) per variant, ${cpus().length} CPUs\n`,
  );

  // 1. Enqueue, worker off.
  const enqueue: Record<'plain' | 'webhooks', Load[]> = { plain: [], webhooks: [] };
  const api = await startApi({ ...env, WEBHOOK_WORKER: 'off' });
  try {
    await load(api.url, tokens.plain); // warm-up
    for (let round = 0; round < settings.rounds; round++) {
      const order = round % 2 === 0 ? (['plain', 'webhooks'] as const) : (['webhooks', 'plain'] as const);
      for (const variant of order) {
        const measured = await load(api.url, tokens[variant]);
        enqueue[variant].push(measured);
        process.stdout.write(
          `  enqueue ${variant}: ${measured.rps} req/s, p50 ${measured.p50_ms} ms, p99 ${measured.p99_ms} ms\n`,
        );
      }
    }
  } finally {
    await stop(api);
  }

  // 2. Drain the backlog with one worker process.
  const backlog = await pendingCount(database);
  const before = received;
  const drainStarted = Date.now();
  const worker = startProcess('dist/src/worker.js', env);
  try {
    await waitDrained(database, 300_000);
  } finally {
    await stop(worker);
  }
  const drainSeconds = (Date.now() - drainStarted) / 1000;
  const failed = Number(
    (
      await sql<{ n: string }>`select count(*) as n from webhook_deliveries where status = 'failed'`.execute(
        database.db,
      )
    ).rows[0]!.n,
  );
  if (failed > 0) throw new Error(`${failed} deliveries failed`);
  const delivery = {
    backlog,
    delivered: received - before,
    seconds: Math.round(drainSeconds * 10) / 10,
    events_per_s: Math.round(backlog / drainSeconds),
    concurrency: Number(process.env.WEBHOOK_CONCURRENCY ?? 8),
  };
  process.stdout.write(
    `  delivery: ${backlog} deliveries in ${delivery.seconds} s (worker start included) = ${delivery.events_per_s} events/s\n`,
  );

  // 3. In-process worker, delivering while serving.
  const inProcessApi = await startApi(env);
  let inProcess: Load & { lag_s: number };
  try {
    const measured = await load(inProcessApi.url, tokens.webhooks);
    const loadEnded = Date.now();
    await waitDrained(database, 300_000);
    inProcess = { ...measured, lag_s: Math.round((Date.now() - loadEnded) / 100) / 10 };
  } finally {
    await stop(inProcessApi);
  }
  process.stdout.write(
    `  in-process: ${inProcess.rps} req/s, p99 ${inProcess.p99_ms} ms, backlog delivered ${inProcess.lag_s} s after the load ended\n`,
  );
  receiver.close();
  await database.close();

  const avg = (list: Load[], key: keyof Load) => list.reduce((sum, m) => sum + m[key], 0) / list.length;
  const ratio = Math.round((avg(enqueue.webhooks, 'p99_ms') / avg(enqueue.plain, 'p99_ms')) * 100) / 100;
  const report = {
    at: new Date().toISOString(),
    settings,
    cpus: cpus().length,
    enqueue,
    enqueue_p99_ratio: ratio,
    delivery,
    in_process: inProcess,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  const row = (name: string, list: Load[]) =>
    `| ${name} | ${Math.round(avg(list, 'rps'))} | ${avg(list, 'p50_ms').toFixed(1)} | ${avg(list, 'p95_ms').toFixed(1)} | ${avg(list, 'p99_ms').toFixed(1)} |`;
  const md = [
    `# Webhooks bench (${report.at}${quick ? ', quick' : ''})`,
    '',
    `Creations at ${settings.rate}/s from ${settings.connections} connections, ${settings.users} users, ${settings.seconds} s × ${settings.rounds} round(s); ${report.cpus} CPUs shared by the API, PostgreSQL, autocannon and the receiver.`,
    '',
    '| Variant (worker off) | req/s | p50 ms | p95 ms | p99 ms |',
    '|---|---|---|---|---|',
    row('plain (no webhooks)', enqueue.plain),
    row('webhooks (a delivery written per creation)', enqueue.webhooks),
    '',
    `p99 with webhooks / without: **${ratio}** (target ≤ 1.2).`,
    '',
    `Delivery: one worker process (concurrency ${delivery.concurrency}) delivered a backlog of ${backlog} in ${delivery.seconds} s, start included: **${delivery.events_per_s} events/s**.`,
    '',
    `In-process worker, delivering while serving: ${inProcess.rps} req/s, p50 ${inProcess.p50_ms} ms, p99 ${inProcess.p99_ms} ms; the last delivery ${inProcess.lag_s} s after the load ended.`,
    '',
  ].join('\n');
  const dir = join(root, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const name = quick ? 'webhooks-quick' : 'webhooks';
  writeFileSync(join(dir, `${name}-latest.json`), JSON.stringify(report, null, 2));
  writeFileSync(
    join(dir, `${name}-${report.at.replace(/[:.]/g, '-').slice(0, 19)}.json`),
    JSON.stringify(report, null, 2),
  );
  writeFileSync(join(dir, `${name}-latest.md`), md);
  process.stdout.write(`\n${md}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench:webhooks failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
