// Latency of GET /api/v1/tasks on a seeded PostgreSQL database (npm run seed first):
//   npm run list-latency -- [--database-url postgres://…] [--requests 3000] [--concurrency 8]
// Starts the built server (npm run build) as its own process on a free loopback port, signs
// tokens for seeded users beforehand, then sends list requests of several shapes (default, sorts,
// filters) from `concurrency` loops and prints p50/p95/p99 per shape and overall. Meant to be run
// at two table sizes with the same per-user size (e.g. 100 users × 100 tasks, then 10,000 × 100).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/database.js';
import { freePort, hs256Token, waitUntilServing } from './server-process.js';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string', default: process.env.DATABASE_URL },
    requests: { type: 'string', default: '3000' },
    concurrency: { type: 'string', default: '8' },
  },
});
if (!values['database-url']) {
  process.stderr.write('list-latency: give --database-url or DATABASE_URL (a seeded PostgreSQL database)\n');
  process.exit(1);
}
const total = Number(values.requests);
const concurrency = Number(values.concurrency);

const shapes = [
  '',
  'sort=due_at',
  'sort=-priority&status=pending',
  'sort=title&tag=work',
  'q=passport',
  'priority=high&due_after=2026-01-01T00%3A00%3A00Z',
];

const port = await freePort();
const secret = randomBytes(32).toString('base64url');
const server = spawn(process.execPath, ['dist/src/main.js'], {
  env: {
    ...process.env,
    NODE_ENV: 'production',
    DATABASE_URL: values['database-url'],
    JWT_SECRET: secret,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'error',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const base = `http://127.0.0.1:${port}/api/v1/tasks`;
await waitUntilServing(`http://127.0.0.1:${port}/health/ready`, server, {
  timeoutMs: 10_000,
  failure: () => 'the server did not start (npm run build first?)',
});
const database = await openDatabase({ url: values['database-url'], poolMax: 1 });

try {
  const { rows } = await sql<{ tasks: number; users: number }>`
    select count(*)::int as tasks, count(distinct owner_id)::int as users from tasks where owner_id like 'seed-user-%'`.execute(
    database.db,
  );
  const { tasks, users } = rows[0]!;
  if (users === 0) throw new Error('no seeded users: run npm run seed first');
  const tokens = await Promise.all(
    Array.from({ length: Math.min(users, 500) }, (_, i) =>
      hs256Token(secret, `seed-user-${1 + Math.floor((i * users) / Math.min(users, 500))}`, '1h'),
    ),
  );
  const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)]!;
  const timings = new Map<string, number[]>(shapes.map((shape) => [shape, []]));
  const get = async (url: string, token: string) => {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    if (response.status !== 200) throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
    return (await response.json()) as { next_cursor: string | null };
  };

  // Warm up connections, caches and JIT, then measure.
  for (let i = 0; i < 200; i += 1) await get(`${base}?${pick(shapes)}`, pick(tokens));
  let sent = 0;
  const loop = async () => {
    while (sent < total) {
      sent += 1;
      const shape = shapes[sent % shapes.length]!;
      const token = pick(tokens);
      const started = performance.now();
      await get(`${base}?${shape}`, token);
      timings.get(shape)!.push(performance.now() - started);
    }
  };
  const wall = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const seconds = (performance.now() - wall) / 1000;

  const pct = (sorted: number[], p: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  const line = (name: string, list: number[]) => {
    const sorted = [...list].sort((a, b) => a - b);
    return `${name.padEnd(48)} ${String(sorted.length).padStart(6)}  p50 ${pct(sorted, 50).toFixed(2).padStart(6)} ms  p95 ${pct(sorted, 95).toFixed(2).padStart(6)} ms  p99 ${pct(sorted, 99).toFixed(2).padStart(6)} ms`;
  };
  process.stdout.write(
    `list-latency: ${tasks.toLocaleString('en')} tasks, ${users.toLocaleString('en')} users, ${total} requests, ${concurrency} concurrent, ${(total / seconds).toFixed(0)} req/s\n`,
  );
  for (const [shape, list] of timings) process.stdout.write(`${line(shape || '(default: newest first)', list)}\n`);
  process.stdout.write(`${line('all shapes', [...timings.values()].flat())}\n`);
} finally {
  server.kill('SIGTERM');
  await database.close();
}
