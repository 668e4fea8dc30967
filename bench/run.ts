// npm run bench [-- --quick] [-- --profile] [-- --pglite]
//
// Throughput and latency of the built API (dist/) against a baseline doing the same work on bare
// node:http + pg (bench/baseline-server.mjs), both on PostgreSQL (BENCH_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/tasks_bench, created if missing), driven by autocannon from
// this process on loopback. Each scenario runs against both servers in turn, alternating which
// goes first, and reports requests/s, p50/p95/p99 latency, errors and the server's peak RSS; the
// ratio ours/baseline is the figure we track. Any error or non-2xx response fails the run.
// `under-attack` is the `list` load while 70 tokenless sockets trickle JSON bodies at 1 byte/s
// (bench/lib/slow-bodies.ts, replaced as the server closes them), against both servers: its
// figures beside `list`'s are what the attack costs the users it is not aimed at.
// Writes bench/results/latest.json (+ a dated copy) and bench/results/latest.md; --quick writes
// quick-latest.json/.md and a dated -quick copy instead, so that it never replaces a full run.
//
// --profile: instead, profiles the API (V8's sampling profiler, in-process, started and stopped by
// signal so only the load is sampled) under the get and the list load, writes the profiles to
// bench/results/profiles/ (open them in Chrome DevTools) and prints where the CPU time went by
// layer and by function.
//
// --ablation: instead, the cost of each layer in microseconds of the server's CPU per request:
// the API (bench/lib/ablation-server.mjs, the same compiled code) with every layer, then with one
// layer left out at a time, under the get and the create load; a layer's cost is the difference.
// Then the cost of tracing: the API as `npm start` runs it (the tracing preload first) with tracing
// off, on at 10 % sampling and on at 100 %, exporting to an OTLP/HTTP receiver in this process.
// Writes bench/results/ablation-latest.json and .md.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { projectRoot } from '../src/http/contract.js';
import { seedTasks } from '../scripts/seed-data.js';
import { ensureDatabase, freePort, hs256Token, waitUntilServing } from '../scripts/server-process.js';
import { formatSummary, summarize } from './lib/profile-report.js';
import { slowBodies } from './lib/slow-bodies.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    pglite: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    ablation: { type: 'boolean', default: false },
    connections: { type: 'string' },
    /** --ablation: how many times each variant is measured (3; 1 with --quick). */
    repeat: { type: 'string' },
    /** Node options for the API's process only, in place of V8_FLAGS (e.g. `--max-semi-space-size=4`): to measure V8 settings. */
    'api-node-options': { type: 'string' },
  },
});
if (values.pglite) {
  // PGlite is single-process and in-memory-ish: its numbers say nothing about production.
  process.stderr.write(
    'bench: PGlite measures something else (one embedded connection); this harness runs on PostgreSQL only.\n',
  );
  process.exit(2);
}

const quick = values.quick;
const settings = {
  users: quick ? 200 : 1000,
  perUser: quick ? 50 : 100,
  seconds: quick ? 2 : 10,
  rounds: quick ? 1 : 2,
  connections: Number(values.connections ?? 32),
};
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tasks_bench';
const root = projectRoot();

type Scenario = 'list' | 'get' | 'create' | 'update' | 'mixed' | 'overload' | 'under-attack';
const scenarios: Scenario[] = ['list', 'get', 'create', 'update', 'mixed', 'overload', 'under-attack'];
/** `overload` is `mixed` from this many connections: more than the API is sized for, so it must shed. */
const OVERLOAD_CONNECTIONS = 256;
/**
 * `under-attack` is `list` while this many tokenless sockets send JSON bodies at 1 byte/s, started
 * ATTACK_LEAD_MS before the load so that they are all in and the first body timeouts (5 s by
 * default) fall inside the measurement.
 */
const ATTACK_SOCKETS = 70;
const ATTACK_LEAD_MS = 3000;

interface Measurement {
  rps: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  errors: number;
  rss_mb: number;
  /** The server's CPU time (user + system) per request answered, in microseconds. */
  cpu_us: number;
  /** Requests answered 503 by load shedding (`overload` only; anywhere else a 503 is an error). */
  shed: number;
  /** `under-attack`: the attacker's connections and what the server answered them, by status. */
  attack?: { opened: number; answers: Record<string, number> };
}

/**
 * What `npm start` puts before the API, read from its script: its V8 settings (V8_FLAGS, which the
 * ablation's servers get too; `--api-node-options` in their place, to measure others) and the
 * tracing preload (a no-op while no OTLP endpoint is set). `--env-file-if-exists` is left out: the
 * bench gives the environment.
 */
const [V8_FLAGS, PRELOAD] = (() => {
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts
    .start;
  const words = start.split(/\s+/);
  const args = words.slice(words.indexOf('node') + 1, words.indexOf('dist/src/main.js'));
  const preload = args.slice(args.indexOf('--import'), args.indexOf('--import') + 2);
  const v8 = args.filter((word) => word.startsWith('--') && !word.startsWith('--env-file') && !preload.includes(word));
  const flags = values['api-node-options']?.split(/\s+/).filter(Boolean) ?? v8;
  return [flags, [...flags, ...preload]];
})();

async function startServer(
  name: string,
  script: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeArgs, script], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  // The baseline has no health route: any answer (401 without a token) means it is up.
  await waitUntilServing(`${url}/api/v1/tasks`, child, {
    timeoutMs: 10_000,
    anyStatus: true,
    failure: () => `${name} did not start`,
  });
  return { url, process: child };
}

/** Samples the server's resident set every 100 ms while `work` runs; resolves to its peak in MB. */
async function peakRss<T>(pid: number, work: Promise<T>): Promise<[T, number]> {
  let peak = 0;
  const sample = () => {
    try {
      const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      peak = Math.max(peak, kb / 1024);
    } catch {
      // the process is gone; the run will fail on its own
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  try {
    return [await work, peak];
  } finally {
    clearInterval(timer);
    sample();
  }
}

/** CPU time the process has used so far (user + system), in microseconds; clock ticks are 10 ms. */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // utime, stime (fields 14 and 15 of stat)
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

interface Fixture {
  tokens: string[];
  /** For each token, ids of that user's tasks. */
  taskIds: string[][];
}

/** One request of the scenario, for a random user (and one of their tasks). */
function requestFor(scenario: Scenario, fixture: Fixture): autocannon.Request {
  const pick =
    scenario === 'mixed' || scenario === 'overload' ? pickMixed() : scenario === 'under-attack' ? 'list' : scenario;
  const user = Math.floor(Math.random() * fixture.tokens.length);
  const headers = { authorization: `Bearer ${fixture.tokens[user]}`, 'content-type': 'application/json' };
  const ids = fixture.taskIds[user]!;
  const id = ids[Math.floor(Math.random() * ids.length)];
  switch (pick) {
    case 'list':
      return { method: 'GET', path: '/api/v1/tasks', headers };
    case 'get':
      return { method: 'GET', path: `/api/v1/tasks/${id}`, headers };
    case 'create':
      return {
        method: 'POST',
        path: '/api/v1/tasks',
        headers,
        body: JSON.stringify({ title: 'Benchmark task', priority: 'high', tags: ['bench'] }),
      };
    case 'update':
      return {
        method: 'PATCH',
        path: `/api/v1/tasks/${id}`,
        headers,
        body: JSON.stringify({ completed: Math.random() < 0.5 }),
      };
  }
}

/** 70 % reads (list and get alike), 30 % writes (create and update alike). */
function pickMixed(): Exclude<Scenario, 'mixed' | 'overload' | 'under-attack'> {
  const r = Math.random();
  return r < 0.35 ? 'list' : r < 0.7 ? 'get' : r < 0.85 ? 'create' : 'update';
}

async function measure(url: string, pid: number, scenario: Scenario, fixture: Fixture): Promise<Measurement> {
  const attack = scenario === 'under-attack' ? slowBodies(url, ATTACK_SOCKETS) : undefined;
  if (attack) await new Promise((resolve) => setTimeout(resolve, ATTACK_LEAD_MS));
  try {
    return { ...(await load(url, pid, scenario, fixture)), ...(attack ? { attack: attack.stop() } : {}) };
  } finally {
    attack?.stop();
  }
}

async function load(url: string, pid: number, scenario: Scenario, fixture: Fixture): Promise<Measurement> {
  const latencies: number[] = [];
  let bad = 0;
  let shed = 0;
  let finish!: (result: autocannon.Result) => void;
  let fail!: (error: unknown) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => ([finish, fail] = [resolve, reject]));
  const instance = autocannon(
    {
      url,
      connections: scenario === 'overload' ? OVERLOAD_CONNECTIONS : settings.connections,
      duration: settings.seconds,
      timeout: 10,
      requests: [{ setupRequest: (request) => ({ ...request, ...requestFor(scenario, fixture) }) }],
    },
    (error, result) => (error ? fail(error) : finish(result)),
  );
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300)
      latencies.push(responseTime); // latency of what was served
    else if (statusCode === 503 && scenario === 'overload') shed += 1;
    else bad += 1;
  });
  const cpuBefore = cpuMicros(pid);
  const [result, rss] = await peakRss(pid, done);
  const cpu = cpuMicros(pid) - cpuBefore;
  latencies.sort((a, b) => a - b);
  return {
    cpu_us: Math.round(cpu / Math.max(1, result.requests.total)),
    rps: Math.round(latencies.length / (result.duration || settings.seconds)), // served (2xx) per second
    shed,
    p50_ms: percentile(latencies, 50),
    p95_ms: percentile(latencies, 95),
    p99_ms: percentile(latencies, 99),
    errors: result.errors + result.timeouts + bad,
    rss_mb: Math.round(rss),
  };
}

/** The mean of several measurements of one server (rounds alternate which server goes first). */
function mean(list: Measurement[]): Measurement {
  const avg = (key: Exclude<keyof Measurement, 'attack'>) => list.reduce((sum, m) => sum + m[key], 0) / list.length;
  const round2 = (n: number) => Math.round(n * 100) / 100;
  return {
    rps: Math.round(avg('rps')),
    p50_ms: round2(avg('p50_ms')),
    p95_ms: round2(avg('p95_ms')),
    p99_ms: round2(avg('p99_ms')),
    errors: list.reduce((sum, m) => sum + m.errors, 0),
    rss_mb: Math.max(...list.map((m) => m.rss_mb)),
    cpu_us: Math.round(avg('cpu_us')),
    shed: list.reduce((sum, m) => sum + m.shed, 0),
    ...(list.some((m) => m.attack) ? { attack: sumAttacks(list.flatMap((m) => (m.attack ? [m.attack] : []))) } : {}),
  };
}

/** The attacker's figures of several measurements, added up. */
function sumAttacks(attacks: NonNullable<Measurement['attack']>[]): NonNullable<Measurement['attack']> {
  const answers: Record<string, number> = {};
  for (const attack of attacks)
    for (const [status, n] of Object.entries(attack.answers)) answers[status] = (answers[status] ?? 0) + n;
  return { opened: attacks.reduce((sum, a) => sum + a.opened, 0), answers };
}

const answersOf = (m: Measurement) =>
  Object.entries(m.attack?.answers ?? {})
    .map(([status, n]) => `${n}× ${status}`)
    .join(', ') || 'none';

/** Seeds the bench database and mints a token for every seeded user. */
async function prepare(): Promise<{ fixture: Fixture; env: Record<string, string> }> {
  await ensureDatabase(databaseUrl);
  const database = await openDatabase({ url: databaseUrl, poolMax: 1 });
  const secret = randomBytes(32).toString('base64url');
  let fixture: Fixture;
  try {
    await migrateToLatest(database.db);
    await seedTasks(database.db, { users: settings.users, perUser: settings.perUser, truncate: true });
    const users = Array.from({ length: settings.users }, (_, i) => `seed-user-${i + 1}`);
    const { rows } = await sql<{ owner_id: string; ids: string[] }>`
      select owner_id, (array_agg(id order by id))[1:20] as ids from tasks group by owner_id`.execute(database.db);
    const idsByUser = new Map(rows.map((row) => [row.owner_id, row.ids]));
    fixture = {
      tokens: await Promise.all(users.map((sub) => hs256Token(secret, sub, '2h'))),
      taskIds: users.map((sub) => idsByUser.get(sub) ?? []),
    };
  } finally {
    await database.close();
  }
  return {
    fixture,
    env: { DATABASE_URL: databaseUrl, JWT_SECRET: secret, NODE_ENV: 'production', DATABASE_POOL_MAX: '10' },
  };
}

async function main(): Promise<number> {
  const started = Date.now();
  const { fixture, env } = await prepare();
  if (values.profile) return profile(fixture, env);
  if (values.ablation) return ablation(fixture, env);
  process.stdout.write(
    `bench: ${settings.users.toLocaleString('en')} users × ${settings.perUser} tasks, ${settings.connections} connections, ` +
      `${settings.seconds} s per scenario and server × ${settings.rounds} round(s), ${cpus().length} CPUs\n`,
  );

  const ours = await startServer('the API', 'dist/src/main.js', env, PRELOAD);
  const baseline = await startServer('the baseline', 'bench/baseline-server.mjs', env);
  const servers = { ours, baseline };
  const results: Record<string, { ours: Measurement; baseline: Measurement; ratio: number }> = {};
  try {
    // Warm both up (JIT, pool, caches) before anything is measured.
    for (const server of [ours, baseline])
      await measure(server.url, server.process.pid!, 'mixed', fixture).catch(() => undefined);
    for (const scenario of scenarios) {
      const runs: Record<'ours' | 'baseline', Measurement[]> = { ours: [], baseline: [] };
      for (let round = 0; round < settings.rounds; round += 1) {
        const order: ('ours' | 'baseline')[] = round % 2 === 0 ? ['ours', 'baseline'] : ['baseline', 'ours'];
        for (const name of order)
          runs[name].push(await measure(servers[name].url, servers[name].process.pid!, scenario, fixture));
      }
      const [o, b] = [mean(runs.ours), mean(runs.baseline)];
      results[scenario] = { ours: o, baseline: b, ratio: Math.round((o.rps / b.rps) * 100) / 100 };
      process.stdout.write(
        `${scenario.padEnd(7)} ours ${String(o.rps).padStart(6)} req/s p99 ${o.p99_ms.toFixed(1).padStart(6)} ms | ` +
          `baseline ${String(b.rps).padStart(6)} req/s p99 ${b.p99_ms.toFixed(1).padStart(6)} ms | ratio ${results[scenario].ratio.toFixed(2)}` +
          `${scenario === 'overload' ? ` | ours shed ${o.shed}` : ''}` +
          `${scenario === 'under-attack' ? ` | attacker answered: ours ${answersOf(o)}; baseline ${answersOf(b)}` : ''}` +
          `${o.errors + b.errors ? `  ERRORS ours ${o.errors} baseline ${b.errors}` : ''}\n`,
      );
    }
  } finally {
    for (const server of [ours, baseline]) server.process.kill('SIGTERM');
  }

  const report = {
    date: new Date().toISOString(),
    quick,
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
    settings,
    scenarios: results,
  };
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const latest = quick ? 'quick-latest' : 'latest';
  writeFileSync(join(dir, `${latest}.json`), json);
  writeFileSync(join(dir, `${report.date.slice(0, 19).replace(/:/g, '-')}${quick ? '-quick' : ''}.json`), json);
  writeFileSync(join(dir, `${latest}.md`), markdown(report));
  process.stdout.write(
    `\n${markdown(report)}\nbench: done in ${Math.round((Date.now() - started) / 1000)} s; bench/results/${latest}.json, ${latest}.md\n`,
  );
  const failed = Object.entries(results).filter(([, r]) => r.ours.errors + r.baseline.errors > 0);
  if (failed.length > 0)
    process.stderr.write(`bench: errors or non-2xx responses in ${failed.map(([name]) => name).join(', ')}\n`);
  return failed.length > 0 ? 1 : 0;
}

/** Waits until `path` exists (a file the server writes when it has finished something). */
async function fileAppears(path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * --profile: the API under the get and the list load, each sampled by V8's profiler for one
 * measurement (bench/lib/profiler.mjs starts and stops it on SIGUSR2), after a warm-up.
 */
async function profile(fixture: Fixture, env: Record<string, string>): Promise<number> {
  const dir = join(root, 'bench', 'results', 'profiles');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'api');
  const ours = await startServer('the API', 'dist/src/main.js', { ...env, BENCH_PROFILE_OUT: out }, [
    '--import',
    './bench/lib/profiler.mjs',
  ]);
  const pid = ours.process.pid!;
  const reports: string[] = [];
  try {
    await measure(ours.url, pid, 'mixed', fixture).catch(() => undefined);
    for (const [index, scenario] of (['get', 'list'] as const).entries()) {
      const file = `${out}.${index}.cpuprofile`;
      rmSync(`${file}.done`, { force: true });
      process.kill(pid, 'SIGUSR2');
      const m = await measure(ours.url, pid, scenario, fixture);
      process.kill(pid, 'SIGUSR2');
      await fileAppears(`${file}.done`, 30_000);
      rmSync(`${file}.done`);
      const target = join(dir, `${scenario}.cpuprofile`);
      writeFileSync(target, readFileSync(file));
      rmSync(file);
      reports.push(
        formatSummary(
          `${scenario} (${m.rps} req/s while profiled, ${target.slice(root.length + 1)})`,
          summarize(target),
        ),
      );
    }
  } finally {
    ours.process.kill('SIGTERM');
  }
  process.stdout.write(`\n${reports.join('\n')}`);
  return 0;
}

const ABLATED = [
  'validator',
  'jwt',
  'rate-limit',
  'access-log',
  'metrics',
  'security-headers',
  'host-header',
  'capacity',
  'request-timeout',
  'owner-scope',
] as const;

/** The middle value, and the distance between the lowest and the highest. */
function medianAndSpread(values: number[]): { median: number; spread: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median: Math.round(median), spread: Math.round(sorted.at(-1)! - sorted[0]!) };
}

/** The server at `url` warmed up (JIT, pool, caches) with the `mixed` load for half a scenario's time. */
async function warmUp(url: string, pid: number, fixture: Fixture) {
  const { seconds } = settings;
  settings.seconds = Math.max(2, Math.ceil(seconds / 2));
  try {
    await measure(url, pid, 'mixed', fixture);
  } finally {
    settings.seconds = seconds;
  }
}

/**
 * --ablation: CPU per request with every layer, and without each one in turn, then with tracing
 * off and on; every variant measured in each of `--repeat` rounds (3 by default, 1 with --quick),
 * the rounds one after another so that a slow spell of the machine touches every variant alike.
 */
async function ablation(fixture: Fixture, env: Record<string, string>): Promise<number> {
  const measured: Scenario[] = ['get', 'create'];
  const repeats = Number(values.repeat ?? (quick ? 1 : 3));
  const rows: { round: number; without: string; scenario: Scenario; cpu_us: number; rps: number }[] = [];
  const tracingRows: { round: number; tracing: string; scenario: Scenario; cpu_us: number; spans: number }[] = [];
  const receiver = await otlpReceiver();
  try {
    for (let round = 1; round <= repeats; round += 1) {
      for (const without of ['all', ...ABLATED]) {
        const server = await startServer(
          `the API without ${without}`,
          'bench/lib/ablation-server.mjs',
          { ...env, BENCH_WITHOUT: without === 'all' ? '' : without },
          V8_FLAGS,
        );
        try {
          await warmUp(server.url, server.process.pid!, fixture);
          for (const scenario of measured) {
            const m = await measure(server.url, server.process.pid!, scenario, fixture);
            if (m.errors > 0) throw new Error(`without ${without}: ${m.errors} errors in ${scenario}`);
            rows.push({ round, without, scenario, cpu_us: m.cpu_us, rps: m.rps });
            process.stdout.write(
              `round ${round} without ${without.padEnd(16)} ${scenario.padEnd(6)} ${String(m.cpu_us).padStart(5)} µs CPU/request, ${m.rps} req/s\n`,
            );
          }
        } finally {
          server.process.kill('SIGTERM');
          await new Promise((resolve) => server.process.once('exit', resolve));
        }
      }
      tracingRows.push(...(await tracingCost(fixture, env, measured, receiver, round)));
    }
  } finally {
    receiver.close();
  }
  const cpuOf = (without: string, scenario: Scenario) =>
    medianAndSpread(rows.filter((r) => r.without === without && r.scenario === scenario).map((r) => r.cpu_us));
  const full = Object.fromEntries(measured.map((s) => [s, cpuOf('all', s)])) as Record<
    Scenario,
    { median: number; spread: number }
  >;
  const table = ABLATED.map((layer) => {
    const get = cpuOf(layer, 'get');
    const create = cpuOf(layer, 'create');
    return {
      layer,
      get: full.get.median - get.median,
      get_spread: get.spread,
      create: full.create.median - create.median,
      create_spread: create.spread,
    };
  }).sort((a, b) => b.get + b.create - (a.get + a.create));
  const tracing = [...new Set(tracingRows.map((t) => t.tracing))].map((variant) => {
    const of = (scenario: Scenario) =>
      medianAndSpread(tracingRows.filter((t) => t.tracing === variant && t.scenario === scenario).map((t) => t.cpu_us));
    return {
      tracing: variant,
      get: of('get'),
      create: of('create'),
      spans: tracingRows.filter((t) => t.tracing === variant).reduce((sum, t) => sum + t.spans, 0),
    };
  });
  const report = {
    date: new Date().toISOString(),
    quick,
    repeats,
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
    settings,
    full,
    rows,
    table,
    tracingRows,
    tracing,
  };
  const md = [
    `${quick ? 'Quick' : 'Full'} ablation run of ${report.date.slice(0, 16).replace('T', ' ')} UTC, each variant measured ${repeats} time(s): the API's CPU per request with every layer (median get ${full.get.median} µs, spread ${full.get.spread}; create ${full.create.median} µs, spread ${full.create.spread}), and what leaving out one layer saves (the medians' difference; the spread is that variant's, highest less lowest), most costly first.`,
    '',
    '| Layer left out | get: µs CPU/request saved | get: spread | create: µs CPU/request saved | create: spread |',
    '|---|---|---|---|---|',
    ...table.map((row) => `| ${row.layer} | ${row.get} | ${row.get_spread} | ${row.create} | ${row.create_spread} |`),
    '',
    'Tracing, the API as `npm start` runs it (median µs of CPU per request, spread; spans exported to a loopback OTLP receiver):',
    '',
    '| Tracing | get: µs CPU/request | create: µs CPU/request | spans received |',
    '|---|---|---|---|',
    ...tracing.map(
      (t) =>
        `| ${t.tracing} | ${t.get.median} (${t.get.spread}) | ${t.create.median} (${t.create.spread}) | ${t.spans.toLocaleString('en')} |`,
    ),
    '',
  ].join('\n');
  const dir = join(root, 'bench', 'results');
  writeFileSync(join(dir, `ablation${quick ? '-quick' : ''}-latest.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, `ablation${quick ? '-quick' : ''}-latest.md`), md);
  process.stdout.write(`\n${md}`);
  return 0;
}

/** A loopback OTLP/HTTP receiver that reads and counts the spans sent to it, and drops them. */
async function otlpReceiver() {
  let spans = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const sent = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
      for (const resource of sent.resourceSpans) for (const scope of resource.scopeSpans) spans += scope.spans.length;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Spans received since the last call. */
    take() {
      const taken = spans;
      spans = 0;
      return taken;
    },
    close: () => server.close(),
  };
}

/**
 * The API with tracing off (the default), on at 10 % sampling and at 100 %: its CPU per request
 * under `measured` loads, spans exported to `receiver` (its work is this process's, not the server's).
 */
async function tracingCost(
  fixture: Fixture,
  env: Record<string, string>,
  measured: Scenario[],
  receiver: Awaited<ReturnType<typeof otlpReceiver>>,
  round: number,
) {
  const variants = [
    { tracing: 'off', env: {} },
    { tracing: 'on, 10 % sampled', env: { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' } },
    { tracing: 'on, 100 % sampled', env: { OTEL_TRACES_SAMPLER: 'always_on' } },
  ];
  const rows: { round: number; tracing: string; scenario: Scenario; cpu_us: number; spans: number }[] = [];
  for (const variant of variants) {
    const traced = variant.tracing === 'off' ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, ...variant.env };
    const server = await startServer(
      `the API, tracing ${variant.tracing}`,
      'dist/src/main.js',
      { ...env, ...traced },
      PRELOAD,
    );
    try {
      await warmUp(server.url, server.process.pid!, fixture);
      receiver.take();
      for (const scenario of measured) {
        const m = await measure(server.url, server.process.pid!, scenario, fixture);
        if (m.errors > 0) throw new Error(`tracing ${variant.tracing}: ${m.errors} errors in ${scenario}`);
        rows.push({ round, tracing: variant.tracing, scenario, cpu_us: m.cpu_us, spans: receiver.take() });
        process.stdout.write(
          `round ${round} tracing ${variant.tracing.padEnd(18)} ${scenario.padEnd(6)} ${String(m.cpu_us).padStart(5)} µs CPU/request, ${m.rps} req/s\n`,
        );
      }
    } finally {
      server.process.kill('SIGTERM');
      await new Promise((resolve) => server.process.once('exit', resolve));
    }
  }
  return rows;
}

function markdown(report: {
  date: string;
  quick: boolean;
  settings: typeof settings;
  scenarios: Record<string, { ours: Measurement; baseline: Measurement; ratio: number }>;
}): string {
  const { settings: s } = report;
  const rows = Object.entries(report.scenarios).map(
    ([name, { ours: o, baseline: b, ratio }]) =>
      `| ${name} | ${o.rps} | ${o.p50_ms} / ${o.p95_ms} / ${o.p99_ms} | ${o.cpu_us} | ${o.rss_mb} | ${b.rps} | ${b.p50_ms} / ${b.p95_ms} / ${b.p99_ms} | ${b.cpu_us} | ${b.rss_mb} | **${ratio.toFixed(2)}** | ${name === 'overload' ? `${Math.round((o.shed / Math.max(1, o.shed + o.rps * s.seconds * s.rounds)) * 1000) / 10} %` : '–'} | ${o.errors + b.errors} |`,
  );
  return [
    `${report.quick ? 'Quick run' : 'Full run'} of ${report.date.slice(0, 16).replace('T', ' ')} UTC: ${s.users} users × ${s.perUser} tasks, ${s.connections} connections, ${s.seconds} s × ${s.rounds} round(s) per scenario and server (overload: mixed from ${OVERLOAD_CONNECTIONS} connections; under-attack: list while ${ATTACK_SOCKETS} tokenless sockets trickle JSON bodies at 1 byte/s; req/s and latencies of requests served 2xx).`,
    '',
    '| Scenario | Ours req/s | Ours p50 / p95 / p99 ms | Ours CPU µs/req | Ours peak RSS MB | Baseline req/s | Baseline p50 / p95 / p99 ms | Baseline CPU µs/req | Baseline peak RSS MB | Ratio ours/baseline | Ours shed (503) | Errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    ...underAttack(report.scenarios),
  ].join('\n');
}

/** `under-attack` beside `list` (the same load without the attack), for each server, and what the attacker got. */
function underAttack(results: Record<string, { ours: Measurement; baseline: Measurement }>): string[] {
  const attacked = results['under-attack'];
  const calm = results.list;
  if (attacked === undefined || calm === undefined) return [];
  const line = (name: string, a: Measurement, c: Measurement) =>
    `| ${name} | ${c.rps} | ${c.p99_ms} | ${a.rps} | ${a.p99_ms} | ${(a.rps / Math.max(1, c.rps)).toFixed(2)} | ${(a.p99_ms / Math.max(0.01, c.p99_ms)).toFixed(2)} | ${a.errors} | ${a.attack?.opened ?? 0}: ${answersOf(a)} |`;
  return [
    `Under attack: the \`list\` load while ${ATTACK_SOCKETS} sockets without a token send POST /api/v1/tasks bodies at 1 byte/s, each replaced once the server closes it (started ${ATTACK_LEAD_MS / 1000} s before the load); without it: the \`list\` row.`,
    '',
    '| Server | req/s without | p99 ms without | req/s under attack | p99 ms under attack | req/s ratio | p99 ratio | Errors under attack | Attacker connections: answers |',
    '|---|---|---|---|---|---|---|---|---|',
    line('ours', attacked.ours, calm.ours),
    line('baseline', attacked.baseline, calm.baseline),
    '',
  ];
}

process.exit(await main());
