// npm run bench:changes [-- --quick] [-- --streams 1000 --writers 100 --rate 200] [-- --keep-database]
//
// What the change history (migration 0010) costs the writes, how its feed reads hold up at 1,000,000
// history rows, and how its live streams fan out: the built API (dist/, started as `npm start` does)
// on PostgreSQL (BENCH_CHANGES_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/tasks_changes_bench,
// created if missing, emptied first, dropped at the end unless --keep-database). Needs the superuser
// (or a role that may CREATE DATABASE, CHECKPOINT and ALTER TABLE tasks).
//
// 1. Write path: creations, then PATCHes, from 32 autocannon connections against one API process,
//    with the history trigger as shipped (`history`) and disabled (`none`: the write path before the
//    history), the order alternating round by round. Then, as the superuser with no API, both
//    variants: autocommit single-row inserts on one connection, the same in one server-side loop
//    (the trigger's µs per row), 16 connections inserting (inserts/s), and one statement inserting
//    many rows for one owner. A CHECKPOINT follows each seed, so that none falls in a measurement.
// 2. Feed: 1,000,000 history rows (seeded by scripts/seed-data.ts: each batch's tasks and their
//    history in one statement, as the migration backfilled it), one owner with 100,000 of them;
//    `GET /changes?since=&limit=100` at the big owner's start, middle, end and head and a small
//    owner's start and head, tokens minted with changeTokens(db).sign and checked against the
//    API's; EXPLAIN (ANALYZE, BUFFERS) of the feed's statement (checked against
//    changes.repository.ts) as the app role, custom and generic.
// 3. Fan-out: `--streams` streams of `--streams`/10 users × 10 from one reader process (this script
//    forked with --reader), `--writers` writers in this one creating tasks at `--rate`/s through the
//    API. Each event is matched to its write: latency, events/s, lost or repeated events, the API's
//    RSS, CPU and /metrics. Streams are woken by polling: every STREAM_POLL_MS (from the environment,
//    else the server's default, 100 ms) each API process reads the heads of the owners it has streams
//    for, and each stream of an owner whose head moved reads the feed. A preload (the only code added
//    to these processes) counts both statements. Then the same with two API processes, the streams
//    split across both and the writes to the first, which the second learns of from its own polls.
//
// Writes bench/results/changes-latest.json and .md plus a dated changes-<time>.json; --quick (< 60 s)
// writes changes-quick-latest.* and changes-<time>-quick.json instead, as bench/attachments.ts does.
// The CPUs are shared by everything: the machine's busy share is recorded beside each load. Any failed
// request or missing event fails the run (after writing). Copied from bench/run.ts (which runs itself
// when imported): START_ARGS, cpuMicros, percentile and the request bodies.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { changeTokens } from '../src/changes/token.js';
import { openDatabase, type Database } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { APP_ROLE, OWNER_SETTING } from '../src/db/roles.js';
import type { DB } from '../src/db/schema.js';
import { projectRoot } from '../src/http/contract.js';
import { seedTasks } from '../scripts/seed-data.js';
import { ensureDatabase, freePort, hs256Token, waitUntilServing } from '../scripts/server-process.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    /** Internal: this process is the fan-out's stream reader (forked by the bench). */
    reader: { type: 'boolean', default: false },
    streams: { type: 'string' },
    writers: { type: 'string' },
    rate: { type: 'string' },
    'keep-database': { type: 'boolean', default: false },
  },
});
const quick = values.quick;
const STREAMS_PER_USER = 10;
const streams = Number(values.streams ?? (quick ? 200 : 1000));
const settings = {
  write: quick
    ? { users: 200, perUser: 50, connections: 32, seconds: 2, rounds: 1, warmupSeconds: 1 }
    : { users: 1000, perUser: 100, connections: 32, seconds: 10, rounds: 2, warmupSeconds: 5 },
  sql: quick
    ? { inserts: 500, owners: 1000, concurrency: 16, concurrentSeconds: 1, rounds: 1 }
    : { inserts: 10_000, owners: 1000, concurrency: 16, concurrentSeconds: 4, rounds: 2 },
  feed: quick
    ? { owners: 450, perOwner: 100, bigOwnerRows: 5000, requests: 50, warmup: 10, limit: 100 }
    : { owners: 9000, perOwner: 100, bigOwnerRows: 100_000, requests: 300, warmup: 30, limit: 100 },
  fanout: {
    streams,
    streamsPerUser: STREAMS_PER_USER,
    users: Math.max(1, Math.floor(streams / STREAMS_PER_USER)),
    writers: Number(values.writers ?? (quick ? 20 : 100)),
    rate: Number(values.rate ?? (quick ? 40 : 200)),
    seconds: quick ? 2 : 20,
    baselineSeconds: quick ? 1 : 10,
    idleSeconds: quick ? 1 : 3,
    openConcurrency: 50,
    /** STREAM_POLL_MS of the API processes: the environment's, else the server's default. */
    pollMs: Number(process.env.STREAM_POLL_MS ?? 100),
  },
};
const databaseUrl = process.env.BENCH_CHANGES_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tasks_changes_bench';
const root = projectRoot();
const TRIGGER = 'tasks_record_change';
/** The bench's own connection to the bench database. */
let benchDatabase: Database | undefined;
const benchDb = (): Kysely<DB> => benchDatabase!.db;

/** One clock for this process and the reader: ms since the epoch, sub-millisecond. */
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (n: number) => Math.round(n * 10) / 10;
const round2 = (n: number) => Math.round(n * 100) / 100;
const mean = (list: number[]) => list.reduce((sum, v) => sum + v, 0) / Math.max(1, list.length);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

function dist(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    mean: round2(mean(sorted)),
    p50: round2(percentile(sorted, 50)),
    p90: round2(percentile(sorted, 90)),
    p99: round2(percentile(sorted, 99)),
    max: round2(sorted.at(-1) ?? 0),
  };
}
type Dist = ReturnType<typeof dist>;
const p50p99max = (d: Dist) => `${d.p50} / ${d.p99} / ${d.max}`;

// ---------------------------------------------------------------------------------------------
// Processes and what they use

/** npm start's node options (V8 settings and the tracing preload), read from its script as bench/run.ts does. */
const START_ARGS = (() => {
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts
    .start;
  const words = start.split(/\s+/);
  return words
    .slice(words.indexOf('node') + 1, words.indexOf('dist/src/main.js'))
    .filter((word) => !word.startsWith('--env-file'));
})();

interface Api {
  url: string;
  child: ChildProcess;
  exited: Promise<unknown>;
}

async function startApi(env: Record<string, string>, nodeArgs: string[] = []): Promise<Api> {
  const port = await freePort();
  const child = spawn(process.execPath, [...START_ARGS, ...nodeArgs, 'dist/src/main.js'], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  await waitUntilServing(`${url}/health/ready`, child, { timeoutMs: 20_000, failure: () => 'the API did not start' });
  return { url, child, exited };
}

async function stopApi(api: Api): Promise<void> {
  api.child.kill('SIGTERM');
  await api.exited;
}

/** CPU time the process has used so far (user + system), in microseconds; clock ticks are 10 ms. */
function cpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return 0; // gone
  }
}

/**
 * The PostgreSQL processes that work for the bench database: its backends (the API's pools, this
 * process's) and the server's background processes (WAL writer, checkpointer, autovacuum…).
 * Backends of other databases (anything else using the server) are not counted: they show as other
 * processes' CPU.
 */
async function postgresPids(): Promise<number[]> {
  const { rows } = await sql<{ pid: number }>`
    select pid from pg_stat_activity
     where datname = current_database() or backend_type <> 'client backend'`.execute(benchDb());
  return rows.map((r) => r.pid);
}

/** The whole machine's busy and total CPU ticks so far (from /proc/stat). */
function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, v) => sum + v, 0);
  return { busy: total - (fields[3] ?? 0) - (fields[4] ?? 0), total };
}

const rssKb = (pid: number): number => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
};

/**
 * CPU shares over a window: per process (% of one core) and the whole machine's busy share (% of
 * all its cores), so that what else ran meanwhile shows.
 */
async function cpuWindow(pids: Record<string, number>) {
  const started = now();
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMicros(pid)]));
  const pgBefore = new Map((await postgresPids()).map((pid) => [pid, cpuMicros(pid)]));
  const selfBefore = process.cpuUsage();
  const machineBefore = machineTicks();
  return async () => {
    const ms = now() - started;
    const self = process.cpuUsage(selfBefore);
    const machine = machineTicks();
    const used = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMicros(pid) - before[name]!]));
    // A backend that started meanwhile counts from zero; one that ended meanwhile is lost (not ours, as a rule).
    const postgres = (await postgresPids()).reduce((sum, pid) => sum + cpuMicros(pid) - (pgBefore.get(pid) ?? 0), 0);
    const pct = (micros: number) => round1((micros / 1000 / ms) * 100);
    const ours = Object.values(used).reduce((sum, v) => sum + v, 0) + postgres + self.user + self.system;
    return {
      ms: Math.round(ms),
      ...Object.fromEntries(Object.entries(used).map(([name, micros]) => [name, pct(micros)])),
      postgres: pct(postgres),
      bench: pct(self.user + self.system),
      /** Everything else on the machine meanwhile (ticks of 10 ms), % of one core: the noise. */
      others: Math.max(0, pct((machine.busy - machineBefore.busy) * 10_000 - ours)),
      machine_busy: round1(
        ((machine.busy - machineBefore.busy) / Math.max(1, machine.total - machineBefore.total)) * 100,
      ),
    } as Record<string, number>;
  };
}

// ---------------------------------------------------------------------------------------------
// 1. The write path

type Variant = 'none' | 'history';
const VARIANTS: Variant[] = ['none', 'history'];
const VARIANT_NAMES: Record<Variant, string> = {
  none: 'none (trigger disabled)',
  history: 'history (trigger as shipped)',
};
/** Both variants, the order alternating with `n` so that drift touches each alike. */
const inTurn = (n: number): Variant[] => (n % 2 === 0 ? ['history', 'none'] : ['none', 'history']);

/** The history trigger as shipped, or disabled: the write path before the history. */
const setTrigger = (db: Kysely<DB>, variant: Variant) =>
  sql`alter table tasks ${sql.raw(variant === 'none' ? 'disable' : 'enable')} trigger ${sql.raw(TRIGGER)}`.execute(db);

/**
 * A checkpoint now, after a seed: the seed's WAL would otherwise start one during a measurement,
 * and every page first written after a checkpoint starts costs a full-page image in the WAL.
 * Needs the superuser (or pg_checkpoint).
 */
async function checkpoint(db: Kysely<DB>): Promise<void> {
  try {
    await sql`checkpoint`.execute(db);
  } catch (error) {
    process.stderr.write(`bench:changes: CHECKPOINT failed (${String(error)}); figures may include one\n`);
  }
}

interface Fixture {
  tokens: string[];
  taskIds: string[][];
}

/** A create or an update (as bench/run.ts's) for a random user and one of their tasks. */
function writeRequest(scenario: 'create' | 'update' | 'mixed', fixture: Fixture): autocannon.Request {
  const pick = scenario === 'mixed' ? (Math.random() < 0.5 ? 'create' : 'update') : scenario;
  const user = Math.floor(Math.random() * fixture.tokens.length);
  const headers = { authorization: `Bearer ${fixture.tokens[user]}`, 'content-type': 'application/json' };
  if (pick === 'create')
    return {
      method: 'POST',
      path: '/api/v1/tasks',
      headers,
      body: JSON.stringify({ title: 'Benchmark task', priority: 'high', tags: ['bench'] }),
    };
  const ids = fixture.taskIds[user]!;
  return {
    method: 'PATCH',
    path: `/api/v1/tasks/${ids[Math.floor(Math.random() * ids.length)]}`,
    headers,
    body: JSON.stringify({ completed: Math.random() < 0.5 }),
  };
}

async function apiLoad(api: Api, scenario: 'create' | 'update' | 'mixed', fixture: Fixture, seconds: number) {
  const latencies: number[] = [];
  let bad = 0;
  const window = await cpuWindow({ api: api.child.pid! });
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: api.url,
        connections: settings.write.connections,
        duration: seconds,
        timeout: 10,
        requests: [{ setupRequest: (request) => ({ ...request, ...writeRequest(scenario, fixture) }) }],
      },
      (error: Error | null, res) => (error ? reject(error) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
      else bad += 1;
    });
  });
  const cpu = await window();
  const perRequest = (pct: number) => Math.round((pct * 10 * cpu.ms!) / Math.max(1, result.requests.total));
  latencies.sort((a, b) => a - b);
  return {
    rps: Math.round(latencies.length / (result.duration || seconds)),
    p50_ms: round1(percentile(latencies, 50)),
    p99_ms: round1(percentile(latencies, 99)),
    errors: result.errors + result.timeouts + bad,
    /** The API's and PostgreSQL's (all its processes) CPU per request answered, µs. */
    api_cpu_us: perRequest(cpu.api!),
    pg_cpu_us: perRequest(cpu.postgres!),
    /** The whole machine's busy share meanwhile, % of all CPUs. */
    machine_busy_pct: cpu.machine_busy!,
    /** What processes other than the API, PostgreSQL and this one used meanwhile, % of one core. */
    others_pct: cpu.others!,
  };
}
type Load = Awaited<ReturnType<typeof apiLoad>>;

/** The mean of each figure over the rounds (errors: the sum). */
const meanLoad = (list: Load[]): Load =>
  Object.fromEntries(
    (Object.keys(list[0]!) as (keyof Load)[]).map((key) => {
      const each = list.map((l) => l[key]);
      return [key, key === 'errors' ? each.reduce((sum, n) => sum + n, 0) : round1(mean(each))];
    }),
  ) as unknown as Load;

async function writePath(database: Database, env: Record<string, string>, secret: string) {
  const { db } = database;
  const s = settings.write;
  await setTrigger(db, 'history');
  await sql`truncate tasks, idempotency_keys, change_heads, task_changes cascade`.execute(db);
  const t = now();
  await seedTasks(db, { users: s.users, perUser: s.perUser });
  const seedSeconds = round1((now() - t) / 1000);
  process.stdout.write(
    `  seeded ${(s.users * s.perUser).toLocaleString('en')} tasks with the trigger on in ${seedSeconds} s\n`,
  );
  await checkpoint(db);
  const users = Array.from({ length: s.users }, (_, i) => `seed-user-${i + 1}`);
  const { rows } = await sql<{ owner_id: string; ids: string[] }>`
    select owner_id, (array_agg(id order by id))[1:20] as ids from tasks group by owner_id`.execute(db);
  const idsByUser = new Map(rows.map((row) => [row.owner_id, row.ids]));
  const fixture: Fixture = {
    tokens: await Promise.all(users.map((sub) => hs256Token(secret, sub, '2h'))),
    taskIds: users.map((sub) => idsByUser.get(sub) ?? []),
  };

  const rounds: { round: number; variant: Variant; scenario: 'create' | 'update'; load: Load }[] = [];
  const api = await startApi(env);
  try {
    await apiLoad(api, 'mixed', fixture, s.warmupSeconds); // warm-up (JIT, pool, caches)
    for (let round = 0; round < s.rounds; round++) {
      for (const variant of inTurn(round)) {
        await setTrigger(db, variant);
        for (const scenario of ['create', 'update'] as const) {
          const load = await apiLoad(api, scenario, fixture, s.seconds);
          rounds.push({ round, variant, scenario, load });
          process.stdout.write(
            `  round ${round + 1} ${VARIANT_NAMES[variant].padEnd(28)} ${scenario.padEnd(6)} ${String(load.rps).padStart(5)} req/s  p50 ${String(load.p50_ms).padStart(3)} ms  p99 ${String(load.p99_ms).padStart(3)} ms  API ${load.api_cpu_us} µs/req  PG ${load.pg_cpu_us} µs/req  machine ${load.machine_busy_pct} % busy, others ${load.others_pct} % of a core${load.errors ? `  ERRORS ${load.errors}` : ''}\n`,
          );
        }
      }
    }
  } finally {
    await setTrigger(db, 'history');
    await stopApi(api);
  }
  const of = (variant: Variant, scenario: 'create' | 'update') =>
    meanLoad(rounds.filter((r) => r.variant === variant && r.scenario === scenario).map((r) => r.load));
  const both = (v: Variant) => ({ create: of(v, 'create'), update: of(v, 'update') });
  const table = { none: both('none'), history: both('history') };
  /** History against none. */
  const ratio = (scenario: 'create' | 'update') => {
    const [h, n] = [table.history[scenario], table.none[scenario]];
    return {
      rps: round2(h.rps / n.rps),
      p50: round2(h.p50_ms / Math.max(0.1, n.p50_ms)),
      p99: round2(h.p99_ms / Math.max(0.1, n.p99_ms)),
      api_cpu: round2(h.api_cpu_us / Math.max(1, n.api_cpu_us)),
      pg_cpu: round2(h.pg_cpu_us / Math.max(1, n.pg_cpu_us)),
    };
  };

  process.stdout.write('  SQL level (superuser, no API):\n');
  const sqlLevel = await sqlLevelCost(db);
  return {
    seed_seconds: seedSeconds,
    rounds,
    table,
    history_vs_none: { create: ratio('create'), update: ratio('update') },
    sql: sqlLevel,
  };
}

/** The insert the SQL-level loops run: a task for one of `owners` owners. */
const INSERT_SQL = `insert into tasks (owner_id, title) values ($1, 'SQL bench task')`;

async function sqlLevelCost(db: Kysely<DB>) {
  const s = settings.sql;
  const single: Record<Variant, number[]> = { history: [], none: [] };
  const loop: Record<Variant, number[]> = { history: [], none: [] };
  const concurrent: Record<Variant, { per_s: number; mean_ms: number }[]> = { history: [], none: [] };
  const connect = async () => {
    const c = new pg.Client({ connectionString: databaseUrl });
    await c.connect();
    return c;
  };
  const client = await connect();
  const clients = await Promise.all(Array.from({ length: s.concurrency }, connect));
  // A named statement, as the API's.
  const insert = (c: pg.Client, owner: string) => c.query({ name: 'bench_insert', text: INSERT_SQL, values: [owner] });
  let sequence = 0;
  const window = await cpuWindow({});
  let cpu: Record<string, number>;
  try {
    // 1. Autocommit single-row inserts, one connection, one after another, in blocks.
    const block = Math.min(1000, s.inserts);
    for (let b = 0; b < s.inserts / block; b++) {
      for (const variant of inTurn(b)) {
        await setTrigger(db, variant);
        for (let i = 0; i < block; i++) {
          const t = now();
          await insert(client, `sql-user-${sequence++ % s.owners}`);
          single[variant].push((now() - t) * 1000);
        }
      }
    }
    for (let round = 0; round < s.rounds; round++) {
      for (const variant of inTurn(round)) {
        await setTrigger(db, variant);
        // 2. The same inserts in one server-side loop: one transaction, no round trips, no commit per row.
        let t = now();
        await client.query(
          `do $$ begin for i in 1..${s.inserts} loop insert into tasks (owner_id, title) values ('sql-loop-' || (i % ${s.owners}), 'SQL bench task'); end loop; end $$`,
        );
        loop[variant].push(((now() - t) * 1000) / s.inserts);
        // 3. `concurrency` connections inserting for a while (autocommit): what concurrent commits allow.
        let done = 0;
        let busyMs = 0;
        t = now();
        const until = t + s.concurrentSeconds * 1000;
        await Promise.all(
          clients.map(async (c, n) => {
            for (let i = 0; now() < until; i++) {
              const started = now();
              await insert(c, `sql-many-${(n * 7919 + i) % s.owners}`);
              busyMs += now() - started;
              done += 1;
            }
          }),
        );
        const last = { per_s: Math.round(done / ((now() - t) / 1000)), mean_ms: round2(busyMs / done) };
        concurrent[variant].push(last);
        process.stdout.write(
          `    ${VARIANT_NAMES[variant].padEnd(28)} server-side loop: ${round1(loop[variant].at(-1)!)} µs/row  ${s.concurrency} connections: ${last.per_s} inserts/s, mean ${last.mean_ms} ms\n`,
        );
      }
    }
    cpu = await window();
  } finally {
    await Promise.all([client, ...clients].map((c) => c.end()));
    await setTrigger(db, 'history');
  }
  const summarize = (v: Variant) => {
    const d = dist(single[v]);
    process.stdout.write(
      `    ${VARIANT_NAMES[v].padEnd(28)} one connection, ${d.n} autocommit inserts: ${d.mean} µs each (p50 ${d.p50}, p99 ${d.p99})\n`,
    );
    return {
      single_us: d,
      loop_us_per_row: round1(mean(loop[v])),
      concurrent_per_s: Math.round(mean(concurrent[v].map((c) => c.per_s))),
      concurrent_mean_ms: round2(mean(concurrent[v].map((c) => c.mean_ms))),
    };
  };
  const summary = { none: summarize('none'), history: summarize('history') };
  // One owner's many changes in ONE transaction: the owner's head row is updated once per row, and
  // each update finds its row past all the versions the transaction made before (set-based imports).
  const oneOwner: { rows: number; history_ms: number; none_ms: number }[] = [];
  for (const rows of quick ? [1000, 4000] : [2000, 8000, 16_000]) {
    const timed = async (variant: Variant) => {
      await setTrigger(db, variant);
      const t = now();
      await sql`insert into tasks (owner_id, title) select ${`bulk-${variant}-${rows}`}, 'SQL bench task' from generate_series(1, ${rows}::int)`.execute(
        db,
      );
      return Math.round(now() - t);
    };
    const none = await timed('none');
    const history = await timed('history');
    oneOwner.push({ rows, history_ms: history, none_ms: none });
    process.stdout.write(
      `    one statement, one owner, ${rows.toLocaleString('en')} rows: ${history} ms with the trigger (${round1((history * 1000) / rows)} µs/row), ${none} ms without\n`,
    );
  }
  return { settings: s, loop, concurrent, summary, one_owner_one_transaction: oneOwner, cpu_pct: cpu! };
}

// ---------------------------------------------------------------------------------------------
// 2. The feed at 1,000,000 history rows

/**
 * The feed's statement, copied from readChanges (src/changes/changes.repository.ts) with its three
 * interpolations as parameters: $1 the owner, $2 the position, $3 the limit. feedSqlMatchesSource
 * checks it against the file at run time.
 */
const FEED_SQL = `
    select h.seq as head, h.pruned_through, c.seq, c.task_id, c.version as change_version, c.deleted_at,
           t.id, t.title, t.description, t.completed, t.priority, t.due_at, t.tags, t.created_at, t.updated_at,
           t.completed_at, t.version
      from (select $1::text as owner_id) o
      left join change_heads h on h.owner_id = o.owner_id
      left join lateral (
        select c.seq, c.task_id, c.version, c.deleted_at from task_changes c
         where c.owner_id = o.owner_id and c.seq > $2
         order by c.seq
         limit $3
      ) c on true
      left join tasks t on t.owner_id = o.owner_id and t.id = c.task_id
     order by c.seq`;

function feedSqlMatchesSource(): boolean {
  const source = readFileSync(join(root, 'src/changes/changes.repository.ts'), 'utf8');
  const body = /sql<Row>`([\s\S]*?)`\.execute\(scoped\)/.exec(source)?.[1];
  if (body === undefined) return false;
  const normalize = (text: string) => text.replace(/\s+/g, ' ').trim();
  const asParams = body.replace('${owner}', '$1').replace('${since}', '$2').replace('${limit}', '$3');
  return normalize(asParams) === normalize(FEED_SQL);
}

async function feed(database: Database, env: Record<string, string>, secret: string) {
  const { db } = database;
  const s = settings.feed;
  await sql`truncate tasks, idempotency_keys, change_heads, task_changes cascade`.execute(db);
  // The seed writes each batch's tasks and their history in one statement, as migration 0010
  // backfilled it; row by row through the trigger a million would take minutes.
  let t = now();
  for (const seeded of [
    await seedTasks(db, { users: s.owners, perUser: s.perOwner }),
    await seedTasks(db, { users: 1, perUser: s.bigOwnerRows }), // seed-user-1 gets these too: the big owner
  ])
    if (seeded.history !== 'set')
      throw new Error(`bench:changes: the seed wrote the history row by row (${seeded.because})`);
  const seedSeconds = round1((now() - t) / 1000);
  t = now();
  for (const table of ['tasks', 'task_changes', 'change_heads'])
    await sql`vacuum analyze ${sql.table(table)}`.execute(db);
  await checkpoint(db);
  const vacuumSeconds = round1((now() - t) / 1000);
  const big = 'seed-user-1';
  const small = `seed-user-${Math.ceil(s.owners / 2)}`;
  const { rows: counts } = await sql<{ history: string; tasks: string; size: string; big: string; small: string }>`
    select (select count(*) from task_changes) as history, (select count(*) from tasks) as tasks,
           pg_size_pretty(pg_total_relation_size('task_changes')) as size,
           (select seq from change_heads where owner_id = ${big}) as big,
           (select seq from change_heads where owner_id = ${small}) as small`.execute(db);
  const historyRows = Number(counts[0]!.history);
  const bigHead = Number(counts[0]!.big);
  const smallHead = Number(counts[0]!.small);
  process.stdout.write(
    `  ${historyRows.toLocaleString('en')} history rows (${counts[0]!.size} with indexes) for ${Number(counts[0]!.tasks).toLocaleString('en')} tasks: tasks and history seeded in ${seedSeconds} s, VACUUM ANALYZE and CHECKPOINT ${vacuumSeconds} s\n`,
  );

  const tokens = changeTokens(db);
  const cases = await Promise.all(
    (
      [
        ['big owner, start', big, 0, bigHead],
        ['big owner, middle', big, Math.floor(bigHead / 2), bigHead],
        ['big owner, end (last page)', big, bigHead - s.limit, bigHead],
        ['big owner, head (nothing new)', big, bigHead, bigHead],
        ['small owner, start', small, 0, smallHead],
        ['small owner, head (nothing new)', small, smallHead, smallHead],
      ] as const
    ).map(async ([name, owner, position, head]) => ({
      case: name,
      owner,
      position,
      head,
      token: await tokens.sign(owner, position),
      times: [] as number[],
      changes: 0,
      bytes: 0,
    })),
  );

  const bearer = new Map(
    await Promise.all([big, small].map(async (o) => [o, `Bearer ${await hs256Token(secret, o, '2h')}`] as const)),
  );
  // Many requests of one user: past the default per-user rate limit (600/min), so raised for this process.
  const api = await startApi({ ...env, RATE_LIMIT_PER_MINUTE: '1000000' });
  let errors = 0;
  let feedCpu: Record<string, number>;
  try {
    const get = async (owner: string, query: string) => {
      const res = await fetch(`${api.url}/api/v1/changes${query}`, { headers: { authorization: bearer.get(owner)! } });
      return { status: res.status, text: await res.text() };
    };
    // The API's own token for the head is the one the bench mints for that position.
    const bootstrap = await get(big, '');
    if ((JSON.parse(bootstrap.text) as { next_token: string }).next_token !== (await tokens.sign(big, bigHead)))
      throw new Error('a token minted by the bench differs from the API’s for the same position');
    const once = async (c: (typeof cases)[number], record: boolean) => {
      const started = now();
      const { status, text } = await get(c.owner, `?since=${c.token}&limit=${s.limit}`);
      const ms = now() - started;
      if (status !== 200) errors += 1;
      else if (record) {
        c.times.push(ms);
        c.changes = (JSON.parse(text) as { changes: unknown[] }).changes.length;
        c.bytes = Buffer.byteLength(text);
      }
    };
    for (let i = 0; i < s.warmup; i++) for (const c of cases) await once(c, false);
    const window = await cpuWindow({ api: api.child.pid! });
    for (let i = 0; i < s.requests; i++) for (const c of cases) await once(c, true);
    feedCpu = await window();
  } finally {
    await stopApi(api);
  }
  const results = cases.map(({ token: _, times, ...c }) => ({ ...c, ms: dist(times) }));
  for (const r of results)
    process.stdout.write(
      `  ${r.case.padEnd(34)} position ${String(r.position).padStart(7)} of ${String(r.head).padStart(7)}: ${String(r.changes).padStart(3)} changes, p50 ${r.ms.p50} ms, p99 ${r.ms.p99} ms\n`,
    );

  const middle = Math.floor(bigHead / 2);
  const plans = await explainFeed([
    { name: 'big owner, middle (custom plan)', owner: big, position: middle, generic: false },
    { name: 'big owner, middle (generic plan)', owner: big, position: middle, generic: true },
    { name: 'small owner, start (custom plan)', owner: small, position: 0, generic: false },
  ]);
  const sqlMatches = feedSqlMatchesSource();
  if (!sqlMatches)
    process.stderr.write(
      'bench:changes: WARNING the feed statement copied here no longer matches src/changes/changes.repository.ts\n',
    );
  return {
    seed: {
      tasks: Number(counts[0]!.tasks),
      history_rows: historyRows,
      history_size: counts[0]!.size,
      big_owner: { owner: big, head: bigHead },
      small_owner: { owner: small, head: smallHead },
      seed_seconds: seedSeconds,
      vacuum_seconds: vacuumSeconds,
      how: "scripts/seed-data.ts, each batch's tasks and their history in one statement (as migration 0010 backfilled it)",
    },
    token_matches_api: true,
    errors,
    cpu_pct: feedCpu!,
    cases: results,
    plans,
    feed_sql_matches_source: sqlMatches,
  };
}

/** EXPLAIN (ANALYZE, BUFFERS) of the feed's statement as the API runs it: prepared, as the app role, its owner set. */
async function explainFeed(cases: { name: string; owner: string; position: number; generic: boolean }[]) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const plans: { name: string; plan: string; feed_index_range_scan: boolean }[] = [];
  try {
    for (const c of cases) {
      await client.query('begin');
      await client.query(`select set_config('role', $1, true), set_config('${OWNER_SETTING}', $2, true)`, [
        APP_ROLE,
        c.owner,
      ]);
      if (c.generic) await client.query(`set local plan_cache_mode = force_generic_plan`);
      await client.query(`prepare bench_feed (text, bigint, bigint) as ${FEED_SQL}`);
      const execute = `execute bench_feed('${c.owner.replace(/'/g, "''")}', ${c.position}, ${settings.feed.limit + 1})`;
      await client.query(execute); // once, so the buffers figures are those of a warm cache
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers) ${execute}`);
      await client.query('rollback');
      await client.query('deallocate bench_feed'); // a prepared statement outlives the transaction
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      plans.push({
        name: c.name,
        plan,
        feed_index_range_scan:
          /Index (Only )?Scan using task_changes_feed_idx/.test(plan) && /Index Cond: .*seq >/.test(plan),
      });
    }
  } finally {
    await client.end();
  }
  return plans;
}

// ---------------------------------------------------------------------------------------------
// 3. Fan-out: the reader process

interface StreamSpec {
  url: string;
  authorization: string;
  server: number;
}
type ReaderCommand =
  | { type: 'ping' }
  | { type: 'open'; streams: StreamSpec[]; concurrency: number }
  | { type: 'mark' }
  | { type: 'collect' }
  | { type: 'close' };
type ReaderReply =
  | { type: 'pong'; at: number }
  | { type: 'opened'; ok: number; failures: Record<string, number>; ms: number }
  | { type: 'mark'; loop_p99_ms: number; loop_max_ms: number }
  | {
      type: 'events';
      stream: number[];
      ids: string[];
      at: number[];
      dropped: { stream: number; after_ms: number }[];
    }
  | { type: 'closed' };

/** The reader: opens the streams it is told to, records each event's task id and arrival, and reports. */
async function readerProcess(): Promise<void> {
  const requests: ClientRequest[] = [];
  let closing = false;
  let stream: number[] = [];
  let ids: string[] = [];
  let at: number[] = [];
  let dropped: { stream: number; after_ms: number }[] = [];
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();

  const open = (spec: StreamSpec, index: number) =>
    new Promise<void>((resolve, reject) => {
      const openedAt = now();
      const req = httpRequest(
        `${spec.url}/api/v1/changes/stream`,
        { agent: false, headers: { authorization: spec.authorization, accept: 'text/event-stream' } },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`HTTP ${res.statusCode}`));
            return;
          }
          res.setEncoding('utf8');
          let buffer = '';
          let opened = false;
          res.on('data', (chunk: string) => {
            const arrived = now();
            buffer += chunk;
            for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              if (block.startsWith('retry:')) {
                if (!opened) resolve();
                opened = true;
              } else {
                const data = /^data: (.*)$/m.exec(block)?.[1];
                if (data === undefined) continue;
                stream.push(index);
                ids.push((JSON.parse(data) as { task: { id: string } }).task.id);
                at.push(arrived);
              }
            }
          });
          res.on('close', () => {
            if (!closing) dropped.push({ stream: index, after_ms: Math.round(now() - openedAt) });
            if (!opened) reject(new Error('closed before the first event'));
          });
        },
      );
      req.on('error', (error) => reject(error));
      req.end();
      requests.push(req);
    });

  const handle = async (command: ReaderCommand): Promise<ReaderReply> => {
    switch (command.type) {
      case 'ping':
        return { type: 'pong', at: now() };
      case 'open': {
        const started = now();
        let next = 0;
        let ok = 0;
        const failures: Record<string, number> = {};
        await Promise.all(
          Array.from({ length: command.concurrency }, async () => {
            while (next < command.streams.length) {
              const index = next++;
              try {
                await open(command.streams[index]!, index);
                ok += 1;
              } catch (error) {
                const why = error instanceof Error ? error.message : String(error);
                failures[why] = (failures[why] ?? 0) + 1;
              }
            }
          }),
        );
        return { type: 'opened', ok, failures, ms: Math.round(now() - started) };
      }
      case 'mark': {
        const reply: ReaderReply = {
          type: 'mark',
          loop_p99_ms: round2(loop.percentile(99) / 1e6),
          loop_max_ms: round2(loop.max / 1e6),
        };
        loop.reset();
        return reply;
      }
      case 'collect': {
        const reply: ReaderReply = { type: 'events', stream, ids, at, dropped };
        [stream, ids, at, dropped] = [[], [], [], []];
        return reply;
      }
      case 'close':
        closing = true;
        for (const req of requests) req.destroy();
        return { type: 'closed' };
    }
  };
  process.on('message', (message: ReaderCommand & { n: number }) => {
    void handle(message).then((reply) => {
      process.send!({ ...reply, n: message.n });
      if (reply.type === 'closed') process.disconnect();
    });
  });
  await new Promise((resolve) => process.once('disconnect', resolve));
}

/** The reader forked, and a way to ask it things. */
function startReader() {
  const child = fork(fileURLToPath(import.meta.url), ['--reader'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let n = 0;
  const waiting = new Map<number, { resolve: (reply: ReaderReply) => void; reject: (error: Error) => void }>();
  child.on('message', (reply: ReaderReply & { n: number }) => {
    waiting.get(reply.n)?.resolve(reply);
    waiting.delete(reply.n);
  });
  child.once('exit', (code) => {
    for (const w of waiting.values()) w.reject(new Error(`the reader exited (${code})`));
    waiting.clear();
  });
  const ask = <T extends ReaderReply['type']>(command: ReaderCommand): Promise<Extract<ReaderReply, { type: T }>> =>
    new Promise((resolve, reject) => {
      const id = ++n;
      waiting.set(id, { resolve: resolve as (reply: ReaderReply) => void, reject });
      child.send({ ...command, n: id });
    });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return { child, ask, exited };
}

// ---------------------------------------------------------------------------------------------
// 3. Fan-out: writers, memory, statement counts, and the measurement

interface Write {
  id?: string;
  user: number;
  sent: number;
  acked: number;
  status: number;
}

/** Creations at `rate`/s in all for `seconds`, write k by writer k % writers, each writer one user. */
async function writeLoad(url: string, authorizations: string[], rate: number, seconds: number, writers: number) {
  const writes: Write[] = [];
  const inFlight: Promise<void>[] = [];
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const started = now();
  let k = 0;
  const fire = (index: number) => {
    const user = (index % writers) % authorizations.length;
    const write: Write = { user, sent: now(), acked: 0, status: 0 };
    writes.push(write);
    inFlight.push(
      fetch(`${url}/api/v1/tasks`, {
        method: 'POST',
        headers: { authorization: authorizations[user]!, 'content-type': 'application/json' },
        body: JSON.stringify({ title: `fan ${index}`, tags: ['bench'] }),
      }).then(
        async (res) => {
          write.status = res.status;
          const body = (await res.json()) as { id?: string };
          write.acked = now();
          write.id = body.id;
        },
        () => {
          write.status = -1;
          write.acked = now();
        },
      ),
    );
  };
  await new Promise<void>((resolve) => {
    const tick = () => {
      const t = now();
      while (k < total && started + k * interval <= t) fire(k++);
      if (k >= total) return resolve();
      setTimeout(tick, Math.max(0, started + k * interval - now()));
    };
    tick();
  });
  await Promise.all(inFlight);
  return { writes, started, ended: now() };
}

/** Resident set (median of 5 samples over ~1 s) and, from /metrics, heap used. */
async function memory(api: Api, metricsToken: string) {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssKb(api.child.pid!));
    await sleep(quick ? 60 : 200);
  }
  const m = await scrape(api, metricsToken);
  samples.sort((a, b) => a - b);
  return { rss_mb: round1(percentile(samples, 50) / 1024), heap_mb: round1(m.heap / 1048576) };
}

async function scrape(api: Api, metricsToken: string) {
  const res = await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } });
  const text = await res.text();
  const pick = (name: string, labels = '(?:\\{[^}]*\\})?') =>
    Number(new RegExp(`^${name}${labels} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    heap: pick('nodejs_heap_size_used_bytes'),
    pool_waiting: pick('db_pool_connections', '\\{state="waiting"\\}'),
    in_flight: pick('http_requests_in_flight'),
    lag_p99_ms: round2(pick('nodejs_eventloop_lag_p99_seconds') * 1000),
    lag_max_ms: round2(pick('nodejs_eventloop_lag_max_seconds') * 1000),
  };
}

/** Substrings that tell the counted statements apart: readChanges's (not the pruner's) and the head poll's. */
const FEED_MARK = 'c.deleted_at from task_changes c';
const POLL_MARK = 'from change_heads where owner_id = any(';

/**
 * A preload for the fan-out's API processes that counts the feed reads (readChanges: the streams'
 * reads, the first one of each stream included) and the head polls (pollingSignals) sent on any pg
 * connection, and writes the counts to BENCH_COUNTS_FILE on SIGUSR2.
 */
const COUNTING_PRELOAD = `data:text/javascript,${encodeURIComponent(`
import pg from ${JSON.stringify(pathToFileURL(join(root, 'node_modules/pg/lib/index.js')).href)};
import { writeFileSync } from 'node:fs';
const counts = { feed: 0, polls: 0 };
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (config, ...rest) {
  const text = typeof config === 'string' ? config : config?.text;
  if (typeof text === 'string') {
    if (text.includes(${JSON.stringify(FEED_MARK)})) counts.feed += 1;
    else if (text.includes(${JSON.stringify(POLL_MARK)})) counts.polls += 1;
  }
  return query.call(this, config, ...rest);
};
process.on('SIGUSR2', () => writeFileSync(process.env.BENCH_COUNTS_FILE, JSON.stringify(counts)));
`)}`;

/** Each process's statement counts so far, and when they were asked for. */
async function statementCounts(apis: { api: Api; file: string }[]) {
  const at = now();
  for (const { api } of apis) api.child.kill('SIGUSR2');
  await sleep(200);
  return {
    at,
    each: apis.map(({ file }) => JSON.parse(readFileSync(file, 'utf8')) as { feed: number; polls: number }),
  };
}

async function fanOut(database: Database, env: Record<string, string>, secret: string, processes: 1 | 2) {
  const s = settings.fanout;
  const label = processes === 1 ? 'one API process' : 'two API processes';
  const metricsToken = randomBytes(24).toString('base64url');
  const apiEnv = {
    ...env,
    STREAMS_MAX: String(s.streams + 100),
    STREAMS_PER_USER: String(s.streamsPerUser + 5),
    MAX_CONNECTIONS: String(s.streams * 2 + 1000),
    MAX_CONNECTIONS_PER_IP: '0',
    METRICS_TOKEN: metricsToken,
    STREAM_POLL_MS: String(s.pollMs),
  };
  const apis: Api[] = [];
  const counted: { api: Api; file: string }[] = [];
  for (let i = 0; i < processes; i++) {
    const file = join(tmpdir(), `bench-changes-counts-${process.pid}-${processes}-${i}`);
    writeFileSync(file, '{"feed":0,"polls":0}');
    const api = await startApi({ ...apiEnv, BENCH_COUNTS_FILE: file }, ['--import', COUNTING_PRELOAD]);
    apis.push(api);
    counted.push({ api, file });
  }
  const apiPids = () => Object.fromEntries(apis.map((api, i) => [`api${i + 1}`, api.child.pid!]));
  const reader = startReader();
  try {
    const users = Array.from({ length: s.users }, (_, i) => `fan${processes}-user-${i + 1}`);
    const authorizations = await Promise.all(users.map(async (u) => `Bearer ${await hs256Token(secret, u, '2h')}`));
    // Writes with no stream open (after as many unmeasured, the warm-up): the baseline of the writes'
    // latency and of the API's CPU per write.
    for (const api of apis) await writeLoad(api.url, authorizations, s.rate, s.baselineSeconds, s.writers);
    const baselineCpu = await cpuWindow({ api: apis[0]!.child.pid! });
    const baseline = await writeLoad(apis[0]!.url, authorizations, s.rate, s.baselineSeconds, s.writers);
    const baselineCpuPct = await baselineCpu();
    const baselineCreated = baseline.writes.filter((w) => w.status === 201).length;
    const cpuPerWriteMicros =
      (baselineCpuPct.api! * 10 * (baseline.ended - baseline.started)) / Math.max(1, baselineCreated);
    await sleep(quick ? 300 : 1000);
    const before = await Promise.all(apis.map((api) => memory(api, metricsToken)));

    // The reader's clock against this one: the reply halfway through the shortest round trip.
    let offset = 0;
    let bestRtt = Infinity;
    for (let i = 0; i < 20; i++) {
      const t0 = now();
      const { at } = await reader.ask<'pong'>({ type: 'ping' });
      const t1 = now();
      if (t1 - t0 < bestRtt) [bestRtt, offset] = [t1 - t0, at - (t0 + t1) / 2];
    }

    const specs: StreamSpec[] = [];
    for (let u = 0; u < s.users; u++)
      for (let j = 0; j < s.streamsPerUser; j++)
        specs.push({ url: apis[j % processes]!.url, authorization: authorizations[u]!, server: j % processes });
    const countsBeforeOpen = await statementCounts(counted);
    const opened = await reader.ask<'opened'>({ type: 'open', streams: specs, concurrency: s.openConcurrency });
    if (opened.ok !== specs.length)
      throw new Error(`${specs.length - opened.ok} streams failed to open: ${JSON.stringify(opened.failures)}`);
    process.stdout.write(
      `  ${label}: ${opened.ok} streams open in ${opened.ms} ms (${Math.round((opened.ok / opened.ms) * 1000)}/s)\n`,
    );
    const idleCpu = await cpuWindow(apiPids());
    await sleep(s.idleSeconds * 1000);
    const idleCpuPct = await idleCpu();
    const idle = await Promise.all(apis.map((api) => memory(api, metricsToken)));

    // The load.
    await reader.ask<'mark'>({ type: 'mark' });
    await Promise.all(apis.map((api) => scrape(api, metricsToken))); // resets the event-loop histograms
    const countsBefore = await statementCounts(counted);
    const rss: number[][] = apis.map(() => []);
    const sampler = setInterval(() => apis.forEach((api, i) => rss[i]!.push(rssKb(api.child.pid!))), 200);
    // Every half second: the pool's waiting clients, requests in flight and the event loop's delay
    // over that half second (prom-client resets its histogram at each scrape).
    const scrapes: Awaited<ReturnType<typeof scrape>>[][] = apis.map(() => []);
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        await sleep(500);
        (await Promise.all(apis.map((api) => scrape(api, metricsToken)))).forEach((m, i) => scrapes[i]!.push(m));
      }
    })();
    const loadCpu = await cpuWindow({ ...apiPids(), reader: reader.child.pid! });
    const load = await writeLoad(apis[0]!.url, authorizations, s.rate, s.seconds, s.writers);
    const loadCpuPct = await loadCpu();
    clearInterval(sampler);
    scraping = false;
    await scraper;
    (await Promise.all(apis.map((api) => scrape(api, metricsToken)))).forEach((m, i) => scrapes[i]!.push(m));
    const readerMark = await reader.ask<'mark'>({ type: 'mark' });

    // Every event of the measured writes, waiting (up to 5 s) for the last ones.
    const byId = new Map(load.writes.filter((w) => w.id !== undefined).map((w) => [w.id!, w]));
    const expected = byId.size * s.streamsPerUser;
    const matched: { stream: number; write: Write; at: number }[] = [];
    const dropped: { stream: number; after_ms: number }[] = [];
    const seen = new Set<string>();
    const deadline = now() + 5000;
    for (;;) {
      const got = await reader.ask<'events'>({ type: 'collect' });
      dropped.push(...got.dropped);
      got.ids.forEach((id, i) => {
        const write = byId.get(id);
        if (write === undefined) return;
        matched.push({ stream: got.stream[i]!, write, at: got.at[i]! - offset });
        seen.add(`${got.stream[i]}:${id}`);
      });
      if (seen.size >= expected || now() > deadline) break;
      await sleep(250);
    }
    // From the load's start until every event came: the reads the writes caused, and the polls meanwhile.
    const countsAfter = await statementCounts(counted);
    const counts = (key: 'feed' | 'polls', from: typeof countsBefore, to: typeof countsAfter) =>
      to.each.map((c, i) => c[key] - from.each[i]![key]);
    const feedReads = counts('feed', countsBefore, countsAfter).reduce((sum, n) => sum + n, 0);
    const feedReadsOnOpen = counts('feed', countsBeforeOpen, countsBefore).reduce((sum, n) => sum + n, 0);
    const polls = counts('polls', countsBefore, countsAfter);

    const windowMs = load.ended - load.started;
    const latency = (server: number | undefined, from: 'sent' | 'acked') =>
      dist(
        matched
          .filter((e) => server === undefined || specs[e.stream]!.server === server)
          .map((e) => e.at - e.write[from]),
      );
    const writeLatency = (writes: Write[]) => dist(writes.filter((w) => w.status === 201).map((w) => w.acked - w.sent));
    const writes201 = load.writes.filter((w) => w.status === 201).length;
    const perServer = apis.map((_, i) => {
      const open = specs.filter((spec) => spec.server === i).length;
      const list = scrapes[i]!;
      return {
        streams: open,
        rss_before_mb: before[i]!.rss_mb,
        rss_idle_mb: idle[i]!.rss_mb,
        rss_load_mean_mb: round1(mean(rss[i]!) / 1024),
        rss_load_peak_mb: round1(Math.max(...rss[i]!) / 1024),
        rss_per_stream_kb: round1(((idle[i]!.rss_mb - before[i]!.rss_mb) * 1024) / open),
        heap_before_mb: before[i]!.heap_mb,
        heap_idle_mb: idle[i]!.heap_mb,
        heap_per_stream_kb: round1(((idle[i]!.heap_mb - before[i]!.heap_mb) * 1024) / open),
        /** The worst half-second's p99, and the maximum. */
        event_loop_lag_p99_ms: Math.max(...list.map((m) => m.lag_p99_ms)),
        event_loop_lag_max_ms: Math.max(...list.map((m) => m.lag_max_ms)),
        pool_waiting_max: Math.max(...list.map((m) => m.pool_waiting)),
        pool_waiting_mean: round1(mean(list.map((m) => m.pool_waiting))),
        requests_in_flight_max: Math.max(...list.map((m) => m.in_flight)),
        cpu_pct: loadCpuPct[`api${i + 1}`]!,
        /** With the streams open and nothing written. */
        idle_cpu_pct: idleCpuPct[`api${i + 1}`]!,
        head_polls: polls[i]!,
        head_polls_per_s: round1((polls[i]! / (countsAfter.at - countsBefore.at)) * 1000),
        events: matched.filter((e) => specs[e.stream]!.server === i).length,
        latency_from_send_ms: latency(i, 'sent'),
        latency_from_201_ms: latency(i, 'acked'),
      };
    });
    const apiCpuMicros = perServer.reduce((sum, p) => sum + p.cpu_pct, 0) * 10 * windowMs;
    const statuses: Record<string, number> = {};
    for (const w of load.writes) statuses[w.status] = (statuses[w.status] ?? 0) + 1;
    const result = {
      processes,
      streams: specs.length,
      open: { ms: opened.ms, per_s: Math.round((opened.ok / opened.ms) * 1000) },
      clock_offset_ms: round2(offset),
      writes: {
        sent: load.writes.length,
        created: writes201,
        failed: [...baseline.writes, ...load.writes].filter((w) => w.status !== 201).length,
        statuses,
        per_s: Math.round((writes201 / windowMs) * 1000),
        latency_no_streams_ms: writeLatency(baseline.writes),
        latency_with_streams_ms: writeLatency(load.writes),
        api_cpu_pct_no_streams: baselineCpuPct.api!,
      },
      events: {
        expected,
        delivered_unique: seen.size,
        missing: expected - seen.size,
        repeated: matched.length - seen.size,
        per_s: Math.round((matched.filter((e) => e.at >= load.started && e.at <= load.ended).length / windowMs) * 1000),
        expected_per_s: Math.round(((writes201 * s.streamsPerUser) / windowMs) * 1000),
        dropped_streams: dropped,
        latency_from_send_ms: latency(undefined, 'sent'),
        latency_from_201_ms: latency(undefined, 'acked'),
      },
      /** Counted from the load's start until its last event came (per write), and while the streams opened (per stream). */
      feed_reads: {
        during_load: feedReads,
        per_write: round2(feedReads / Math.max(1, writes201)),
        per_stream_opened: round2(feedReadsOnOpen / Math.max(1, opened.ok)),
      },
      head_polls_per_s_per_process: perServer.map((p) => p.head_polls_per_s),
      cpu_pct: loadCpuPct,
      /** The API's CPU per event delivered, less what the writes cost it without streams. */
      api_cpu_us_per_event: Math.round((apiCpuMicros - writes201 * cpuPerWriteMicros) / Math.max(1, matched.length)),
      api_cpu_us_per_write_no_streams: Math.round(cpuPerWriteMicros),
      /**
       * With two processes, the second one only serves streams: its CPU under the load less its CPU
       * idle (streams open, polling), per event it delivered and per write.
       */
      stream_only_process:
        processes > 1
          ? (() => {
              const p = perServer[1]!;
              const micros = (p.cpu_pct - p.idle_cpu_pct) * 10 * windowMs;
              return {
                cpu_us_per_event: Math.round(micros / Math.max(1, p.events)),
                cpu_us_per_write: Math.round(micros / Math.max(1, writes201)),
              };
            })()
          : undefined,
      reader_event_loop: { p99_ms: readerMark.loop_p99_ms, max_ms: readerMark.loop_max_ms },
      per_server: perServer,
    };
    const e = result.events;
    process.stdout.write(
      `  ${label}: ${result.writes.per_s} writes/s (${result.writes.failed} failed: ${JSON.stringify(statuses)}) → ${e.per_s} events/s (expected ${e.expected_per_s}), ${e.delivered_unique}/${e.expected} delivered, ${e.repeated} repeated, ${dropped.length} streams dropped; ` +
        `latency from send p50 ${e.latency_from_send_ms.p50} / p99 ${e.latency_from_send_ms.p99} / max ${e.latency_from_send_ms.max} ms, from 201 p50 ${e.latency_from_201_ms.p50} / p99 ${e.latency_from_201_ms.p99} ms; ` +
        `STREAM_POLL_MS ${s.pollMs}: head polls/s per process ${result.head_polls_per_s_per_process.join(', ')}, feed reads per write ${result.feed_reads.per_write}; ` +
        `CPU ${JSON.stringify(loadCpuPct)}\n`,
    );
    return result;
  } finally {
    await reader.ask<'closed'>({ type: 'close' }).catch(() => undefined);
    await reader.exited;
    for (const api of apis) await stopApi(api);
    for (const { file } of counted) rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The run and its report

async function main(): Promise<number> {
  const started = now();
  const at = new Date().toISOString();
  await ensureDatabase(databaseUrl);
  const database = await openDatabase({ url: databaseUrl, poolMax: 1 }); // one connection: seedTasks's setseed
  benchDatabase = database;
  const secret = randomBytes(32).toString('base64url');
  const env = { DATABASE_URL: databaseUrl, JWT_SECRET: secret, NODE_ENV: 'production', DATABASE_POOL_MAX: '10' };
  const machine = {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    loadavg_at_start: loadavg().map(round2),
  };
  process.stdout.write(
    `bench:changes${quick ? ' --quick' : ''}: ${machine.cpus} CPUs (${machine.model}), load average ${machine.loadavg_at_start.join(' ')}; everything shares them\n`,
  );
  const pollSql = readFileSync(join(root, 'src/changes/signals.ts'), 'utf8').includes(POLL_MARK);
  if (!pollSql)
    process.stderr.write(
      'bench:changes: WARNING the head poll in src/changes/signals.ts changed: polls are not counted\n',
    );
  let report: Report;
  try {
    await migrateToLatest(database.db);
    const phase = async <T>(title: string, work: () => Promise<T>): Promise<T> => {
      process.stdout.write(`${title}\n`);
      const t = now();
      const result = await work();
      process.stdout.write(`  (${Math.round((now() - t) / 1000)} s)\n`);
      return result;
    };
    const writes = await phase('1. Write path: history trigger as shipped / disabled', () =>
      writePath(database, env, secret),
    );
    const feedResult = await phase(
      `2. Feed reads at ${(settings.feed.owners * settings.feed.perOwner + settings.feed.bigOwnerRows).toLocaleString('en')} history rows`,
      () => feed(database, env, secret),
    );
    const one = await phase('3. Fan-out, one API process', () => fanOut(database, env, secret, 1));
    const two = await phase('3. Fan-out, two API processes', () => fanOut(database, env, secret, 2));
    report = {
      at,
      quick,
      machine,
      loadavg_at_end: loadavg().map(round2),
      settings,
      write_path: writes,
      feed: feedResult,
      fanout: { one_process: one, two_processes: two, poll_sql_found: pollSql },
      seconds: Math.round((now() - started) / 1000),
    };
  } finally {
    await database.close();
  }
  if (!values['keep-database']) await dropDatabase(databaseUrl);

  const md = markdown(report);
  const dir = join(root, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const latest = quick ? 'changes-quick-latest' : 'changes-latest';
  const json = `${JSON.stringify(report, null, 2)}\n`;
  writeFileSync(join(dir, `${latest}.json`), json);
  writeFileSync(join(dir, `changes-${at.slice(0, 19).replace(/:/g, '-')}${quick ? '-quick' : ''}.json`), json);
  writeFileSync(join(dir, `${latest}.md`), md);
  process.stdout.write(
    `\n${md}\nbench:changes: done in ${report.seconds} s; bench/results/${latest}.json, ${latest}.md\n`,
  );

  const failures = [
    ...Object.values(report.write_path.table).flatMap((v) => [v.create.errors, v.update.errors]),
    report.feed.errors,
    ...[report.fanout.one_process, report.fanout.two_processes].flatMap((x) => [x.writes.failed, x.events.missing]),
  ].reduce((sum, n) => sum + n, 0);
  if (failures > 0) process.stderr.write(`bench:changes: ${failures} failed requests or missing events (see above)\n`);
  return failures > 0 ? 1 : 0;
}

async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: Object.assign(new URL(url), { pathname: '/postgres' }).toString() });
  await admin.connect();
  try {
    await admin.query(`drop database if exists "${name.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
}

type FanOut = Awaited<ReturnType<typeof fanOut>>;
type Report = {
  at: string;
  quick: boolean;
  machine: { cpus: number; model: string; node: string; loadavg_at_start: number[] };
  loadavg_at_end: number[];
  settings: typeof settings;
  write_path: Awaited<ReturnType<typeof writePath>>;
  feed: Awaited<ReturnType<typeof feed>>;
  fanout: { one_process: FanOut; two_processes: FanOut; poll_sql_found: boolean };
  seconds: number;
};

function markdown(r: Report): string {
  const w = r.write_path;
  const ws = r.settings.write;
  const sq = w.sql.summary;
  const ss = w.sql.settings;
  const f = r.feed;
  const fs = r.settings.fanout;
  const hn = w.history_vs_none;
  const pct = (n: number) => `${n >= 1 ? '+' : ''}${Math.round((n - 1) * 100)} %`;
  const statuses = (x: FanOut) =>
    Object.entries(x.writes.statuses)
      .filter(([status]) => status !== '201')
      .map(([status, n]) => `${n}× ${status === '-1' ? 'network error' : status}`)
      .join(', ');
  const summary = (x: FanOut, name: string) => {
    const e = x.events;
    return `| ${name} | ${x.streams} (${x.open.per_s}/s to open) | ${x.writes.per_s} of ${fs.rate}${x.writes.failed ? ` (failed: ${statuses(x)})` : ''} | **${e.per_s}** (expected ${e.expected_per_s}) | ${e.delivered_unique} / ${e.expected}, ${e.repeated} repeated, ${e.dropped_streams.length} streams dropped | **${p50p99max(e.latency_from_send_ms)}** | ${p50p99max(e.latency_from_201_ms)} | ${x.writes.latency_no_streams_ms.p50} / ${x.writes.latency_no_streams_ms.p99} → ${x.writes.latency_with_streams_ms.p50} / ${x.writes.latency_with_streams_ms.p99} | **${x.head_polls_per_s_per_process.join(' + ')}** | **${x.feed_reads.per_write}** (${x.feed_reads.per_stream_opened}) |`;
  };
  const servers = (x: FanOut, name: string) =>
    x.per_server.map(
      (p, i) =>
        `| ${name}${x.processes > 1 ? `, process ${i + 1}${i === 0 ? ' (takes the writes)' : ''}` : ''} | ${p.streams} | ${p50p99max(p.latency_from_send_ms)} | ${p50p99max(p.latency_from_201_ms)} | ${p.rss_before_mb} → ${p.rss_idle_mb} → ${p.rss_load_mean_mb} (peak ${p.rss_load_peak_mb}) | **${p.rss_per_stream_kb}** | ${p.heap_before_mb} → ${p.heap_idle_mb}: **${p.heap_per_stream_kb}** | ${p.cpu_pct} | ${p.event_loop_lag_p99_ms} / ${p.event_loop_lag_max_ms} | ${p.pool_waiting_mean} / ${p.pool_waiting_max} | ${p.requests_in_flight_max} |`,
    );
  const cpu = (x: FanOut, name: string) =>
    `| ${name} | ${x.writes.api_cpu_pct_no_streams} | ${x.per_server.map((p) => `${p.cpu_pct} (idle ${p.idle_cpu_pct})`).join(' + ')} | ${x.api_cpu_us_per_event}${x.stream_only_process ? `; process 2 (streams only): **${x.stream_only_process.cpu_us_per_event} µs per event, ${x.stream_only_process.cpu_us_per_write} µs per write**` : ''} | ${x.cpu_pct.postgres} | ${x.cpu_pct.reader} (loop p99 ${x.reader_event_loop.p99_ms} ms, max ${x.reader_event_loop.max_ms} ms) | ${x.cpu_pct.bench} | ${x.cpu_pct.others} | ${x.cpu_pct.machine_busy} |`;
  const one = r.fanout.one_process;
  const two = r.fanout.two_processes;
  return [
    `# Change history bench (${r.at}${r.quick ? ', quick' : ''})`,
    '',
    `${r.machine.cpus} CPUs (${r.machine.model}), Node ${r.machine.node}, PostgreSQL 15 on the same machine; the API, PostgreSQL, the load generators and anything else running share the CPUs (load average ${r.machine.loadavg_at_start.join(' ')} at the start, ${r.loadavg_at_end.join(' ')} at the end; "other processes" below is the CPU the rest of the machine took meanwhile). Run took ${r.seconds} s.`,
    '',
    '## 1. Write path: what the history trigger costs',
    '',
    `Through the API (one process, pool of 10), ${ws.connections} connections, ${ws.users} users × ${ws.perUser} tasks, ${ws.seconds} s per measurement, ${ws.rounds} round(s) alternating the order of the variants; means of the rounds. "none" is the write path without the history (trigger disabled on the bench database); "history" is the trigger as shipped, which numbers each change under the owner's head row and sends no notification (the streams poll the heads).`,
    '',
    '| Variant | create req/s | create p50 / p99 ms | update req/s | update p50 / p99 ms | API CPU µs/req (create / update) | PostgreSQL CPU µs/req (create / update) | other processes, % of a core (create / update) |',
    '|---|---|---|---|---|---|---|---|',
    ...VARIANTS.map((v) => {
      const [c, u] = [w.table[v].create, w.table[v].update];
      return `| ${VARIANT_NAMES[v]} | ${c.rps} | ${c.p50_ms} / ${c.p99_ms} | ${u.rps} | ${u.p50_ms} / ${u.p99_ms} | ${c.api_cpu_us} / ${u.api_cpu_us} | ${c.pg_cpu_us} / ${u.pg_cpu_us} | ${c.others_pct} / ${u.others_pct} |`;
    }),
    '',
    `History vs none: create throughput **×${hn.create.rps}** (p50 ×${hn.create.p50}, p99 ×${hn.create.p99}, PostgreSQL CPU/req ×${hn.create.pg_cpu}); update throughput **×${hn.update.rps}** (p50 ×${hn.update.p50}, p99 ×${hn.update.p99}, PostgreSQL CPU/req ×${hn.update.pg_cpu}).`,
    '',
    `SQL level, as the superuser (no RLS, no API), ${ss.owners} owners; the single-connection inserts in blocks of ${Math.min(1000, ss.inserts).toLocaleString('en')} with the variants taking turns, the rest in ${ss.rounds} round(s); meanwhile PostgreSQL used ${w.sql.cpu_pct.postgres} % of a core, this process ${w.sql.cpu_pct.bench} %, other processes ${w.sql.cpu_pct.others} %:`,
    '',
    `| Variant | one connection, ${ss.inserts.toLocaleString('en')} autocommit inserts: µs each, mean (p50 / p99) | server-side loop, one transaction: µs/row | ${ss.concurrency} connections, ${ss.concurrentSeconds} s: inserts/s (mean ms) |`,
    '|---|---|---|---|',
    ...VARIANTS.map(
      (v) =>
        `| ${VARIANT_NAMES[v]} | ${sq[v].single_us.mean} (${sq[v].single_us.p50} / ${sq[v].single_us.p99}) | ${sq[v].loop_us_per_row} | ${sq[v].concurrent_per_s} (${sq[v].concurrent_mean_ms}) |`,
    ),
    '',
    `Per row, the trigger adds **${round1(sq.history.loop_us_per_row - sq.none.loop_us_per_row)} µs** of server work (loop) and ${round1(sq.history.single_us.p50 - sq.none.single_us.p50)} µs to the median autocommit insert; with ${ss.concurrency} connections, inserts/s ${pct(sq.history.concurrent_per_s / sq.none.concurrent_per_s)}.`,
    '',
    "One statement inserting many rows for ONE owner (one transaction; the owner's head row is updated once per row):",
    '',
    '| Rows | with the trigger ms (µs/row) | without ms |',
    '|---|---|---|',
    ...w.sql.one_owner_one_transaction.map(
      (o) =>
        `| ${o.rows.toLocaleString('en')} | ${o.history_ms} (${round1((o.history_ms * 1000) / o.rows)}) | ${o.none_ms} |`,
    ),
    '',
    `## 2. Feed reads at ${f.seed.history_rows.toLocaleString('en')} history rows`,
    '',
    `${f.seed.history_rows.toLocaleString('en')} history rows (${f.seed.history_size} with indexes) for ${f.seed.tasks.toLocaleString('en')} tasks; the big owner ${f.seed.big_owner.owner} has ${f.seed.big_owner.head.toLocaleString('en')}, the small one ${f.seed.small_owner.owner} ${f.seed.small_owner.head}. Seeded by ${f.seed.how}: ${f.seed.seed_seconds} s, VACUUM ANALYZE and CHECKPOINT ${f.seed.vacuum_seconds} s. \`GET /api/v1/changes?since=<token>&limit=${r.settings.feed.limit}\`, one request at a time over keep-alive, the cases interleaved, ${r.settings.feed.requests} each after ${r.settings.feed.warmup} of warm-up; time to the whole body. Tokens minted by the bench match the API's: ${f.token_matches_api}. Meanwhile, % of a core: API ${f.cpu_pct.api}, PostgreSQL ${f.cpu_pct.postgres}, this process ${f.cpu_pct.bench}, other processes ${f.cpu_pct.others}.`,
    '',
    '| Case | position / head | changes | body bytes | p50 ms | p99 ms | mean ms | max ms |',
    '|---|---|---|---|---|---|---|---|',
    ...f.cases.map(
      (c) =>
        `| ${c.case} | ${c.position.toLocaleString('en')} / ${c.head.toLocaleString('en')} | ${c.changes} | ${c.bytes.toLocaleString('en')} | **${c.ms.p50}** | **${c.ms.p99}** | ${c.ms.mean} | ${c.ms.max} |`,
    ),
    '',
    `EXPLAIN (ANALYZE, BUFFERS) of the feed's statement (copied from src/changes/changes.repository.ts; still the same: ${f.feed_sql_matches_source}), prepared and run as the app role with the owner set, limit ${r.settings.feed.limit + 1} as the API asks, once before so the cache is warm:`,
    '',
    ...f.plans.flatMap((p) => [
      `${p.name}: index range scan on task_changes_feed_idx: **${p.feed_index_range_scan}**`,
      '',
      '```',
      p.plan,
      '```',
      '',
    ]),
    '## 3. Fan-out',
    '',
    `${fs.streams} streams (${fs.users} users × ${fs.streamsPerUser}) from one reader process (node:http, a socket each); ${fs.writers} writers in the bench process, each one of those users, creating tasks through the API at ${fs.rate}/s in all (open loop) for ${fs.seconds} s: each write is an event on its user's ${fs.streamsPerUser} streams. Streams are woken by polling, STREAM_POLL_MS = **${fs.pollMs}**: every ${fs.pollMs} ms (plus the statement's own time) each API process reads the heads of the owners it has streams for, in one statement, and each stream of an owner whose head moved reads the feed; so an event waits for the next poll of the process serving its stream (up to ${fs.pollMs} ms after the commit), then for a feed read. With two processes the streams are split across both and the writes go to the first; the second learns of them from its own polls, as the first does. Latency per event from the write's send and from its 201's arrival (the commit is between the two; from the 201 can be negative: the event came first). Head polls and feed reads: the statements the API processes sent (a preload wraps pg's Client#query${r.fanout.poll_sql_found ? '' : '; WARNING the poll statement in src/changes/signals.ts changed, so polls were not counted'}): head polls per second per process during the load, feed reads per write during the load and per stream opened. Write latency "no streams": the same writes before any stream was opened.`,
    '',
    '| Variant | streams | writes/s created | events/s delivered | delivered / expected | latency from send p50 / p99 / max ms | from 201 p50 / p99 / max ms | write p50 / p99 ms, no streams → with streams | head polls per second per process | feed reads per write (per stream opened) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    summary(one, 'one process'),
    summary(two, 'two processes'),
    '',
    '| Process | streams | latency from send p50 / p99 / max ms | from 201 p50 / p99 / max ms | RSS MB: before → streams open, idle → under load (mean) | RSS KB per stream | heap used MB before → open; KB per stream | CPU % of a core under load | event-loop delay, worst ½ s p99 / max ms | pool clients waiting, mean / max | requests in flight, max |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...servers(one, 'one process'),
    ...servers(two, 'two processes'),
    '',
    'CPU during the fan-out load, % of one core (machine busy: % of all cores):',
    '',
    "| Variant | API, writes alone (no streams) | API(s) under the fan-out (idle: streams open and polling, no writes) | API µs per event delivered: one process, CPU less that of the writes alone; two, the streams-only process's CPU less its idle | PostgreSQL | reader (client) | bench process (writers) | other processes | machine busy % |",
    '|---|---|---|---|---|---|---|---|---|',
    cpu(one, 'one process'),
    cpu(two, 'two processes'),
    '',
  ].join('\n');
}

if (values.reader) await readerProcess();
else process.exit(await main());
