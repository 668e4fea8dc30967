// npm run bench:attachments [-- --quick]
//
// Attachment throughput and memory of the built API (dist/) on PostgreSQL (BENCH_DATABASE_URL,
// default postgres://postgres@127.0.0.1:5432/tasks_bench, created if missing; its attachment
// tables are emptied before and after), against a reference doing the least the job needs: a bare
// node:http server that streams each request body to a file on disk (stream.pipeline into
// fs.createWriteStream, hashing with sha256 on the way; for multipart, busboy's file part instead of
// the body, so that both store the file itself) and serves a file with fs.createReadStream. It
// writes to os.tmpdir() (REFERENCE_DIR to change it) without fsync, where PostgreSQL commits every
// chunk durably. The reference is this same file run with --serve-reference, its own process like
// the API, driven by the same client code over loopback.
//
// 1. Throughput: a file of 10 MiB (PDF header + random bytes, a new one for every upload) uploaded
//    as the raw body and as multipart/form-data, and downloaded (every download's sha256 checked),
//    one request at a time; `runs` measured requests after one warm-up, in `rounds` rounds that
//    alternate which server goes first. MB/s is 10^6 bytes of file per second.
// 2. Memory: `burst` concurrent uploads of distinct 10 MiB files (each to its own task, each by its
//    own user), the server's RSS sampled every 50 ms: idle right before the burst (the median of 1 s
//    of samples, after everything above), peak during, growth = peak − idle; target < 64 MiB.
//    A raw-body burst, then a multipart one; then each burst's files are downloaded, all at once
//    (RSS sampled the same way, against its own idle figure), and every sha256 compared.
// 3. PostgreSQL alone, for where the time goes: the bench process itself, over one pg connection,
//    writing a file the way the default store does (a table shaped like attachment_chunks, one
//    autocommitted INSERT per 256 KiB chunk) and reading it back the same way (4 chunks per
//    SELECT, bytea as pg returns it), no HTTP, no API; a scratch table, dropped afterwards.
//
// The client streams: a request's body is a Buffer built before the clock starts and written once;
// a response is read piece by piece into a hash, never collected. Any non-2xx answer or sha256
// mismatch fails the run (exit 1). --quick (2 MiB, 4 concurrent, 1 round) is the CI smoke run.
// Writes bench/results/attachments-latest.json and .md plus a dated JSON copy; --quick writes
// attachments-quick-latest.json/.md and a dated -quick copy, so that it never replaces a full run.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import busboy from 'busboy';
// The harness's own modules (pg, kysely, the app's database code, jose) are loaded in main(), so
// that the reference server, this same file, starts with node:http, node:fs and busboy only.
type Harness = Awaited<ReturnType<typeof loadHarness>>;
const loadHarness = async () => ({
  ...(await import('kysely')),
  pg: (await import('pg')).default,
  ...(await import('../src/db/database.js')),
  ...(await import('../src/db/migrate.js')),
  ...(await import('../src/attachments/postgres-store.js')),
  ...(await import('../src/http/contract.js')),
  ...(await import('../scripts/server-process.js')),
});
let h: Harness;

const MiB = 1024 * 1024;
const MB = 1e6;
/** The growth of the API's RSS during the upload burst that the issue sets as the target. */
const GROWTH_TARGET_MIB = 64;
const SAMPLE_EVERY_MS = 50;

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'serve-reference': { type: 'boolean', default: false },
    runs: { type: 'string' },
    rounds: { type: 'string' },
  },
});

// ---------------------------------------------------------------------------------------------
// The reference server (this file run with --serve-reference): the same two routes, nothing else.

async function serveReference(): Promise<void> {
  const dir = mkdtempSync(join(process.env.REFERENCE_DIR ?? tmpdir(), 'tasks-api-attachments-reference-'));
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const upload = req.method === 'POST' && /^\/api\/v1\/tasks\/[^/]+\/attachments$/.test(url);
    const download = req.method === 'GET' ? /^\/api\/v1\/attachments\/([0-9a-f-]{36})\/content$/.exec(url) : null;
    if (upload) {
      const id = randomUUID();
      const hash = createHash('sha256');
      let size = 0;
      const hashing = new Transform({
        transform(piece: Buffer, _encoding, done) {
          hash.update(piece);
          size += piece.length;
          done(null, piece);
        },
      });
      // The file is the body, or (multipart) busboy's `file` part: the same pipeline either way.
      const file = (req.headers['content-type'] ?? '').startsWith('multipart/form-data')
        ? new Promise<NodeJS.ReadableStream>((resolve, reject) => {
            const parser = busboy({ headers: req.headers, limits: { files: 1 } });
            parser.once('file', (_name, stream) => resolve(stream));
            parser.once('error', reject);
            parser.once('close', () => reject(new Error('no file part')));
            req.pipe(parser);
          })
        : Promise.resolve(req);
      file
        .then((source) => pipeline(source, hashing, createWriteStream(join(dir, id))))
        .then(
          () => json(res, 201, { id, size, sha256: hash.digest('hex') }),
          (error: unknown) => json(res, 500, { error: String(error) }),
        );
    } else if (download) {
      const path = join(dir, download[1]!);
      let size: number;
      try {
        size = statSync(path).size;
      } catch {
        json(res, 404, { error: 'not found' });
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size });
      pipeline(createReadStream(path), res).catch(() => res.destroy());
    } else {
      // Anything else (the readiness probe): drain and answer.
      req.resume();
      json(res, req.url === '/health' ? 200 : 404, {});
    }
  });
  server.listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1');
  const stop = () => {
    rmSync(dir, { recursive: true, force: true });
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// ---------------------------------------------------------------------------------------------
// The harness.

const quick = values.quick;
const settings = {
  file_mib: quick ? 2 : 10,
  runs: Number(values.runs ?? 5),
  warmups: 1,
  rounds: Number(values.rounds ?? (quick ? 1 : 2)),
  burst: quick ? 4 : 16,
  sample_every_ms: SAMPLE_EVERY_MS,
  database_pool_max: 10,
};
const fileBytes = settings.file_mib * MiB;
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tasks_bench';
const CLK_TCK = 100; // Linux USER_HZ, what /proc/<pid>/stat counts in

type ServerName = 'ours' | 'reference';
type Kind = 'upload_raw' | 'upload_multipart' | 'download';
const kinds: Kind[] = ['upload_raw', 'upload_multipart', 'download'];

interface Server {
  name: ServerName;
  url: string;
  process: ChildProcess;
  pid: number;
  agent: Agent;
}

/** Someone whose requests the API accepts: a token, and the tasks to attach files to. */
interface User {
  sub: string;
  token: string;
}

/** A file the client has and the id the server gave it. */
interface Stored {
  id: string;
  bytes: number;
  sha256: string;
}

/** Everything that went wrong (non-2xx, wrong hash, wrong size); any of it fails the run. */
const failures: string[] = [];

/** A PDF the server's sniffer takes as application/pdf: its header, then random bytes (tests/helpers/files.ts `pdf()`). */
const pdf = (size: number): Buffer => {
  const head = Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1');
  return Buffer.concat([head, randomBytes(size - head.length)], size);
};
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Empties the attachment tables of the bench database (a full run leaves ~0.5 GB of chunks otherwise). */
async function emptyAttachments(): Promise<void> {
  const database = await h.openDatabase({ url: databaseUrl, poolMax: 1 });
  try {
    await h.migrateToLatest(database.db);
    await h.sql`truncate attachments, attachment_chunks, attachment_blobs, attachment_usage`.execute(database.db);
  } finally {
    await database.close();
  }
}

async function startServer(
  name: ServerName,
  args: string[],
  env: Record<string, string>,
  probe: string,
): Promise<Server> {
  const port = await h.freePort();
  const child = spawn(process.execPath, args, {
    cwd: h.projectRoot(),
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await h.waitUntilServing(`${url}${probe}`, child, { timeoutMs: 15_000, failure: () => `${name} did not start` });
  return { name, url, process: child, pid: child.pid!, agent: new Agent({ keepAlive: true, maxSockets: 64 }) };
}

// ---------------------------------------------------------------------------------------------
// The client: node:http, body written once, response streamed into a hash.

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  bytes: number;
  sha256: string;
  /** The body as text when it is small (JSON answers); undefined for a file. */
  text?: string;
  ms: number;
}

function send(
  server: Server,
  method: string,
  path: string,
  headers: Record<string, string | number>,
  body: Buffer[] = [],
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(`${server.url}${path}`, { method, headers, agent: server.agent }, (res) => {
      const hash = createHash('sha256');
      const small: Buffer[] = [];
      let bytes = 0;
      res.on('data', (piece: Buffer) => {
        hash.update(piece);
        bytes += piece.length;
        if (bytes <= 64 * 1024) small.push(piece);
      });
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          bytes,
          sha256: hash.digest('hex'),
          text: bytes <= 64 * 1024 ? Buffer.concat(small).toString('utf8') : undefined,
          ms: performance.now() - started,
        }),
      );
    });
    req.on('error', reject);
    for (const piece of body.slice(0, -1)) req.write(piece);
    req.end(body.at(-1));
  });
}

const auth = (user: User) => ({ Authorization: `Bearer ${user.token}` });

/** A task of `user` on the API; the reference takes any task id. */
async function newTask(server: Server, user: User): Promise<string> {
  if (server.name === 'reference') return randomUUID();
  const body = Buffer.from(JSON.stringify({ title: 'Attachment bench' }));
  const answer = await send(
    server,
    'POST',
    '/api/v1/tasks',
    { ...auth(user), 'Content-Type': 'application/json', 'Content-Length': body.length },
    [body],
  );
  if (answer.status !== 201) throw new Error(`creating a task: ${answer.status} ${answer.text ?? ''}`);
  return (JSON.parse(answer.text!) as { id: string }).id;
}

/** A request that uploads `file` to `taskId`, ready to send: the raw body, or one multipart/form-data part named `file`. */
function uploadRequest(user: User, taskId: string, file: Buffer, multipart: boolean) {
  const path = `/api/v1/tasks/${taskId}/attachments`;
  if (!multipart) {
    const headers = {
      ...auth(user),
      'Content-Type': 'application/pdf',
      'Content-Disposition': 'attachment; filename="bench.pdf"',
      'Content-Length': file.length,
    };
    return { path, headers, body: [file] };
  }
  const boundary = `----tasks-api-bench-${randomBytes(12).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.pdf"\r\nContent-Type: application/pdf\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const headers = {
    ...auth(user),
    'Content-Type': `multipart/form-data; boundary=${boundary}`,
    'Content-Length': head.length + file.length + tail.length,
  };
  return { path, headers, body: [head, file, tail] };
}

/** Sends a prepared upload and checks the answer (201, the size and sha256 of what was sent). */
async function upload(
  server: Server,
  prepared: ReturnType<typeof uploadRequest>,
  expected: { bytes: number; sha256: string },
  what: string,
): Promise<{ stored: Stored; ms: number }> {
  const answer = await send(server, 'POST', prepared.path, prepared.headers, prepared.body);
  let id = '';
  if (answer.status !== 201) {
    failures.push(`${server.name} ${what}: ${answer.status} ${answer.text?.slice(0, 300) ?? ''}`);
  } else {
    const body = JSON.parse(answer.text!) as { id: string; size: number; sha256: string; content_type?: string };
    id = body.id;
    if (body.size !== expected.bytes || body.sha256 !== expected.sha256)
      failures.push(
        `${server.name} ${what}: stored ${body.size} bytes with sha256 ${body.sha256}, sent ${expected.bytes} with ${expected.sha256}`,
      );
    if (server.name === 'ours' && body.content_type !== 'application/pdf')
      failures.push(`${server.name} ${what}: stored as ${body.content_type}`);
  }
  return { stored: { id, ...expected }, ms: answer.ms };
}

/** Downloads a stored file and checks status, size and sha256. */
async function download(
  server: Server,
  user: User,
  stored: Stored,
  what: string,
): Promise<{ ms: number; ok: boolean }> {
  if (stored.id === '') {
    failures.push(`${server.name} ${what}: nothing to download (its upload failed)`);
    return { ms: Number.NaN, ok: false };
  }
  const answer = await send(server, 'GET', `/api/v1/attachments/${stored.id}/content`, auth(user));
  const before = failures.length;
  if (answer.status !== 200)
    failures.push(`${server.name} ${what}: ${answer.status} ${answer.text?.slice(0, 300) ?? ''}`);
  else if (answer.bytes !== stored.bytes || answer.sha256 !== stored.sha256)
    failures.push(
      `${server.name} ${what}: got ${answer.bytes} bytes with sha256 ${answer.sha256}, expected ${stored.bytes} with ${stored.sha256}`,
    );
  return { ms: answer.ms, ok: failures.length === before };
}

// ---------------------------------------------------------------------------------------------
// What the servers use: RSS and CPU from /proc.

function rssMiB(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined; // the process is gone; the run fails on its own
  }
}

/** User + system CPU seconds of a process. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** CPU seconds of every PostgreSQL process (backends, WAL writer, checkpointer…), whoever they work for. */
function postgresCpuSeconds(): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'postgres') total += cpuSeconds(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** Samples a process's RSS every SAMPLE_EVERY_MS while `work` runs. */
async function sampled<T>(
  pid: number,
  work: () => Promise<T>,
): Promise<{ result: T; peak: number; samples: number; maxGapMs: number }> {
  let peak = 0;
  let samples = 0;
  let last = performance.now();
  let maxGapMs = 0;
  const sample = () => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    samples += 1;
    peak = Math.max(peak, rssMiB(pid) ?? 0);
  };
  sample();
  const timer = setInterval(sample, SAMPLE_EVERY_MS);
  try {
    return { result: await work(), peak, samples, maxGapMs };
  } finally {
    clearInterval(timer);
    sample();
  }
}

/** The median RSS over `ms` of quiet. */
async function idleRss(pid: number, ms = 1000): Promise<number> {
  const values: number[] = [];
  for (let t = 0; t < ms; t += SAMPLE_EVERY_MS) {
    values.push(rssMiB(pid) ?? 0);
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS));
  }
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)]!;
}

// ---------------------------------------------------------------------------------------------
// The measurements.

interface Throughput {
  /** File bytes over the summed time of the measured requests, in 10^6 bytes per second. */
  mb_s: number;
  /** Each measured request's own MB/s. */
  runs_mb_s: number[];
  ms_mean: number;
  /** CPU seconds the server process spent per file (user + system), over the measured requests. */
  server_cpu_s_per_file: number;
  /** CPU seconds all PostgreSQL processes spent per file meanwhile (anyone else's work included). */
  postgres_cpu_s_per_file: number;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const round3 = (n: number) => Math.round(n * 1000) / 1000;
const signed = (n: number) => (n < 0 ? `−${-n}` : `+${n}`);

/** `runs` sequential requests of one kind against one server, after `warmups` unmeasured ones. */
async function measure(
  server: Server,
  user: User,
  kind: Kind,
  downloadable: Stored,
): Promise<{ ms: number[]; cpu: number; pgCpu: number }> {
  const ms: number[] = [];
  let cpu = 0;
  let pgCpu = 0;
  for (let i = 0; i < settings.warmups + settings.runs; i += 1) {
    const measured = i >= settings.warmups;
    const what = `${kind} ${measured ? `#${i - settings.warmups + 1}` : 'warm-up'}`;
    let elapsed: number;
    let before: [number, number];
    if (kind === 'download') {
      before = [cpuSeconds(server.pid), postgresCpuSeconds()];
      elapsed = (await download(server, user, downloadable, what)).ms;
    } else {
      // A new file each time (the API stores a file it already has once); built before the clock starts.
      const file = pdf(fileBytes);
      const prepared = uploadRequest(user, await newTask(server, user), file, kind === 'upload_multipart');
      const expected = { bytes: file.length, sha256: sha256(file) };
      before = [cpuSeconds(server.pid), postgresCpuSeconds()];
      elapsed = (await upload(server, prepared, expected, what)).ms;
    }
    if (measured) {
      ms.push(elapsed);
      cpu += cpuSeconds(server.pid) - before[0];
      pgCpu += postgresCpuSeconds() - before[1];
    }
  }
  return { ms, cpu, pgCpu };
}

function summarise(list: { ms: number[]; cpu: number; pgCpu: number }[]): Throughput {
  const ms = list.flatMap((m) => m.ms);
  const total = ms.reduce((a, b) => a + b, 0);
  return {
    mb_s: round1((fileBytes * ms.length) / MB / (total / 1000)),
    runs_mb_s: ms.map((t) => round1(fileBytes / MB / (t / 1000))),
    ms_mean: round1(total / ms.length),
    server_cpu_s_per_file: round3(list.reduce((a, m) => a + m.cpu, 0) / ms.length),
    postgres_cpu_s_per_file: round3(list.reduce((a, m) => a + m.pgCpu, 0) / ms.length),
  };
}

interface Burst {
  files: number;
  file_mib: number;
  idle_rss_mib: number;
  peak_rss_mib: number;
  growth_mib: number;
  upload_wall_s: number;
  /** All the burst's bytes over its wall time. */
  upload_mb_s: number;
  rss_samples: number;
  max_sample_gap_ms: number;
  /** The same files downloaded all at once, after both upload bursts: RSS right before, peak during. */
  download_idle_rss_mib: number;
  download_peak_rss_mib: number;
  download_growth_mib: number;
  download_wall_s: number;
  round_tripped: number;
}

/** `settings.burst` concurrent uploads of distinct files, each by its own user to its own task. */
async function uploadBurst(server: Server, users: User[], multipart: boolean) {
  const label = `${multipart ? 'multipart' : 'raw'} burst`;
  const prepared = await Promise.all(
    users.map(async (user) => {
      const file = pdf(fileBytes);
      return {
        user,
        request: uploadRequest(user, await newTask(server, user), file, multipart),
        expected: { bytes: file.length, sha256: sha256(file) },
      };
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 500)); // let the task creation settle
  const idle = await idleRss(server.pid);
  const started = performance.now();
  const up = await sampled(server.pid, () =>
    Promise.all(prepared.map((p, i) => upload(server, p.request, p.expected, `${label} upload ${i + 1}`))),
  );
  const wall = (performance.now() - started) / 1000;
  return { label, users, idle, wall, ...up };
}

/** Every file of an upload burst downloaded at once, each checked. */
async function downloadBurst(server: Server, up: Awaited<ReturnType<typeof uploadBurst>>): Promise<Burst> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  const idle = await idleRss(server.pid);
  const started = performance.now();
  const down = await sampled(server.pid, () =>
    Promise.all(
      up.result.map(
        async ({ stored }, i) => (await download(server, up.users[i]!, stored, `${up.label} download ${i + 1}`)).ok,
      ),
    ),
  );
  const wall = (performance.now() - started) / 1000;
  return {
    files: up.users.length,
    file_mib: settings.file_mib,
    idle_rss_mib: round1(up.idle),
    peak_rss_mib: round1(up.peak),
    growth_mib: round1(up.peak - up.idle),
    upload_wall_s: round3(up.wall),
    upload_mb_s: round1((fileBytes * up.users.length) / MB / up.wall),
    rss_samples: up.samples,
    max_sample_gap_ms: Math.round(up.maxGapMs),
    download_idle_rss_mib: round1(idle),
    download_peak_rss_mib: round1(down.peak),
    download_growth_mib: round1(down.peak - idle),
    download_wall_s: round3(wall),
    round_tripped: down.result.filter(Boolean).length,
  };
}

/** A raw upload burst, then a multipart one, then the downloads of each (so that no download's memory sits under an upload's idle figure). */
async function bursts(server: Server, users: User[]): Promise<{ raw: Burst; multipart: Burst }> {
  const raw = await uploadBurst(server, users, false);
  const multipart = await uploadBurst(server, users, true);
  return { raw: await downloadBurst(server, raw), multipart: await downloadBurst(server, multipart) };
}

interface Alone {
  mb_s: number;
  runs_mb_s: number[];
  ms_mean: number;
}

/** PostgreSQL without the API: the default store's statements, sequential, over one connection (see 3. above). */
async function postgresAlone(): Promise<{ upload: Alone; download: Alone }> {
  const client = new h.pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const table = 'bench_attachment_chunks';
  const chunk = h.CHUNK_BYTES;
  const summary = (ms: number[]): Alone => {
    const total = ms.reduce((a, b) => a + b, 0);
    return {
      mb_s: round1((fileBytes * ms.length) / MB / (total / 1000)),
      runs_mb_s: ms.map((t) => round1(fileBytes / MB / (t / 1000))),
      ms_mean: round1(total / ms.length),
    };
  };
  try {
    await client.query(`drop table if exists ${table}`);
    await client.query(
      `create table ${table} (blob_id uuid not null, start_offset bigint not null, data bytea not null, primary key (blob_id, start_offset))`,
    );
    await client.query(`alter table ${table} alter column data set storage external`);
    const up: number[] = [];
    const down: number[] = [];
    let last = { id: '', sha256: '' };
    const measured = settings.runs * settings.rounds;
    for (let i = 0; i < settings.warmups + measured; i += 1) {
      const file = pdf(fileBytes);
      const id = randomUUID();
      const started = performance.now();
      for (let offset = 0; offset < file.length; offset += chunk) {
        await client.query(`insert into ${table} (blob_id, start_offset, data) values ($1, $2, $3)`, [
          id,
          offset,
          file.subarray(offset, offset + chunk),
        ]);
      }
      if (i >= settings.warmups) up.push(performance.now() - started);
      last = { id, sha256: sha256(file) };
    }
    for (let i = 0; i < settings.warmups + measured; i += 1) {
      const hash = createHash('sha256');
      let bytes = 0;
      const started = performance.now();
      for (let from = 0; from < fileBytes;) {
        const { rows } = await client.query<{ start_offset: string; data: Buffer }>(
          `select start_offset, data from ${table} where blob_id = $1 and start_offset >= $2 order by start_offset limit 4`,
          [last.id, from],
        );
        if (rows.length === 0) break;
        for (const row of rows) {
          hash.update(row.data);
          bytes += row.data.length;
          from = Number(row.start_offset) + row.data.length;
        }
      }
      if (i >= settings.warmups) down.push(performance.now() - started);
      const got = hash.digest('hex');
      if (bytes !== fileBytes || got !== last.sha256)
        failures.push(
          `postgres alone download: got ${bytes} bytes with sha256 ${got}, expected ${fileBytes} with ${last.sha256}`,
        );
    }
    return { upload: summary(up), download: summary(down) };
  } finally {
    await client.query(`drop table if exists ${table}`).catch(() => undefined);
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------

interface Report {
  date: string;
  quick: boolean;
  machine: { cpus: number; model: string; node: string; loadavg_at_start: number[] };
  settings: typeof settings;
  throughput: Record<Kind, { ours: Throughput; reference: Throughput; ratio: number }>;
  memory: {
    target_growth_mib: number;
    ours: { raw: Burst; multipart: Burst };
    reference: { raw: Burst; multipart: Burst };
  };
  postgres_alone: { upload: Alone; download: Alone };
  failures: string[];
  seconds: number;
}

async function main(): Promise<number> {
  const started = Date.now();
  h = await loadHarness();
  const loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  await h.ensureDatabase(databaseUrl);
  await emptyAttachments();
  const secret = randomBytes(32).toString('base64url');
  const token = (sub: string) => h.hs256Token(secret, sub, '2h');
  const run = randomBytes(4).toString('hex');
  const sequential: User = { sub: `bench-attachments-${run}`, token: await token(`bench-attachments-${run}`) };
  const burstUsers = await Promise.all(
    Array.from({ length: settings.burst }, async (_, i) => ({
      sub: `bench-attachments-${run}-${i + 1}`,
      token: await token(`bench-attachments-${run}-${i + 1}`),
    })),
  );
  process.stdout.write(
    `bench:attachments: ${settings.file_mib} MiB files, ${settings.warmups} warm-up + ${settings.runs} measured per kind, server and round, ` +
      `${settings.rounds} round(s); bursts of ${settings.burst}; ${cpus().length} CPUs, load ${loadavg.join(' ')}\n`,
  );

  const env = {
    DATABASE_URL: databaseUrl,
    JWT_SECRET: secret,
    NODE_ENV: 'production',
    DATABASE_POOL_MAX: String(settings.database_pool_max),
    // The per-file limit stays the default (10 MiB, what is measured); the rest must not get in the way.
    ATTACHMENT_QUOTA_BYTES: String(64 * 1024 ** 3),
    RATE_LIMIT_PER_MINUTE: '100000',
  };
  const ours = await startServer('ours', ['dist/src/main.js'], env, '/health/ready');
  let reference: Server | undefined;
  const results = {} as Report['throughput'];
  let memory: Report['memory'];
  let alone: Report['postgres_alone'];
  try {
    reference = await startServer(
      'reference',
      [...process.execArgv, fileURLToPath(import.meta.url), '--serve-reference'],
      {},
      '/health',
    );
    const servers = { ours, reference };

    // Something to download on each: uploaded once, outside any measurement (it also warms up).
    const downloadable = {} as Record<ServerName, Stored>;
    for (const server of [ours, reference]) {
      const file = pdf(fileBytes);
      const prepared = uploadRequest(sequential, await newTask(server, sequential), file, false);
      downloadable[server.name] = (
        await upload(server, prepared, { bytes: file.length, sha256: sha256(file) }, 'setup upload')
      ).stored;
    }

    for (const kind of kinds) {
      const runs: Record<ServerName, Awaited<ReturnType<typeof measure>>[]> = { ours: [], reference: [] };
      for (let round = 0; round < settings.rounds; round += 1) {
        const order: ServerName[] = round % 2 === 0 ? ['ours', 'reference'] : ['reference', 'ours'];
        for (const name of order) runs[name].push(await measure(servers[name], sequential, kind, downloadable[name]));
      }
      const [o, r] = [summarise(runs.ours), summarise(runs.reference)];
      results[kind] = { ours: o, reference: r, ratio: Math.round((o.mb_s / r.mb_s) * 100) / 100 };
      process.stdout.write(
        `${kind.padEnd(16)} ours ${o.mb_s.toFixed(1).padStart(7)} MB/s [${o.runs_mb_s.join(' ')}] | ` +
          `reference ${r.mb_s.toFixed(1).padStart(7)} MB/s [${r.runs_mb_s.join(' ')}] | ratio ${results[kind].ratio.toFixed(2)}\n`,
      );
    }

    alone = await postgresAlone();
    process.stdout.write(
      `postgres alone   upload ${alone.upload.mb_s} MB/s [${alone.upload.runs_mb_s.join(' ')}] | download ${alone.download.mb_s} MB/s [${alone.download.runs_mb_s.join(' ')}]\n`,
    );

    memory = {
      target_growth_mib: GROWTH_TARGET_MIB,
      ours: await bursts(ours, burstUsers),
      reference: await bursts(reference, burstUsers),
    };
    for (const name of ['ours', 'reference'] as const) {
      for (const mode of ['raw', 'multipart'] as const) {
        const b = memory[name][mode];
        process.stdout.write(
          `${`${name} ${mode}`.padEnd(19)} ${b.files}×${b.file_mib} MiB: RSS idle ${b.idle_rss_mib} peak ${b.peak_rss_mib} growth ${b.growth_mib} MiB ` +
            `(${b.rss_samples} samples, max gap ${b.max_sample_gap_ms} ms), ${b.upload_mb_s} MB/s; downloads: RSS ${b.download_idle_rss_mib} → ${b.download_peak_rss_mib}; ${b.round_tripped}/${b.files} round-tripped\n`,
        );
      }
    }
  } finally {
    for (const server of [ours, reference]) {
      if (server === undefined) continue;
      server.agent.destroy();
      server.process.kill('SIGTERM');
    }
    await Promise.all(
      [ours, reference].flatMap((s) =>
        s && s.process.exitCode === null ? [new Promise((resolve) => s.process.once('exit', resolve))] : [],
      ),
    );
    await emptyAttachments().catch(() => undefined);
  }

  const report: Report = {
    date: new Date().toISOString(),
    quick,
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      loadavg_at_start: loadavg,
    },
    settings,
    throughput: results,
    memory,
    postgres_alone: alone,
    failures,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  const dir = join(h.projectRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const latest = quick ? 'attachments-quick-latest' : 'attachments-latest';
  writeFileSync(join(dir, `${latest}.json`), json);
  writeFileSync(
    join(dir, `attachments-${report.date.slice(0, 19).replace(/:/g, '-')}${quick ? '-quick' : ''}.json`),
    json,
  );
  writeFileSync(join(dir, `${latest}.md`), markdown(report));
  process.stdout.write(
    `\n${markdown(report)}\nbench:attachments: done in ${report.seconds} s; bench/results/${latest}.json, ${latest}.md\n`,
  );
  if (failures.length > 0) {
    process.stderr.write(
      `bench:attachments: ${failures.length} failed request(s) or check(s):\n${failures
        .slice(0, 20)
        .map((f) => `  ${f}\n`)
        .join('')}`,
    );
    return 1;
  }
  return 0;
}

function markdown(report: Report): string {
  const { settings: s, throughput: t, memory: m } = report;
  const label: Record<Kind, string> = {
    upload_raw: 'Upload, raw body',
    upload_multipart: 'Upload, multipart',
    download: 'Download',
  };
  const rows = kinds.map((kind) => {
    const { ours: o, reference: r, ratio } = t[kind];
    return `| ${label[kind]} | ${o.mb_s} | ${o.ms_mean} | ${Math.min(...o.runs_mb_s)}–${Math.max(...o.runs_mb_s)} | ${r.mb_s} | ${r.ms_mean} | ${Math.min(...r.runs_mb_s)}–${Math.max(...r.runs_mb_s)} | **${ratio.toFixed(2)}** | ${o.server_cpu_s_per_file} / ${o.postgres_cpu_s_per_file} | ${r.server_cpu_s_per_file} |`;
  });
  const memoryRows = (['ours', 'reference'] as const).flatMap((name) =>
    (['raw', 'multipart'] as const).map((mode) => {
      const b = m[name][mode];
      const met = name === 'ours' ? (b.growth_mib < m.target_growth_mib ? ' ✓' : ' ✗') : '';
      return `| ${name === 'ours' ? 'Ours' : 'Reference'}, ${mode} | ${b.files} × ${b.file_mib} MiB | ${b.idle_rss_mib} | ${b.peak_rss_mib} | **${b.growth_mib}**${met} | ${b.upload_wall_s} s (${b.upload_mb_s} MB/s) | ${b.download_idle_rss_mib} / ${b.download_peak_rss_mib} / ${signed(b.download_growth_mib)} | ${b.round_tripped}/${b.files} |`;
    }),
  );
  return [
    `${report.quick ? 'Quick run' : 'Full run'} of ${report.date.slice(0, 16).replace('T', ' ')} UTC (${report.machine.cpus} CPUs, load ${report.machine.loadavg_at_start.join(' ')} at start, ${report.seconds} s): ` +
      `${s.file_mib} MiB files, ${s.warmups} warm-up + ${s.runs} sequential requests per kind, server and round, ${s.rounds} round(s) alternating which server goes first. ` +
      "Reference: bare node:http, the body (multipart: busboy's file part) piped to a file on disk while hashed, no fsync; files served with fs.createReadStream. MB/s = 10^6 bytes of file per second; CPU = user + system time of the process (PostgreSQL: all its processes).",
    '',
    '| Transfer | Ours MB/s | Ours ms/file | Ours range MB/s | Reference MB/s | Reference ms/file | Reference range MB/s | Ratio ours/reference | Ours CPU s/file (API / PostgreSQL) | Reference CPU s/file |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `PostgreSQL alone (no HTTP, no API: one pg connection from the bench process, the default store's statements — an autocommitted INSERT per ${h.CHUNK_BYTES / 1024} KiB chunk, SELECTs of 4 chunks, bytea as pg returns it — ${s.runs * s.rounds} files after ${s.warmups} warm-up): ` +
      `upload **${report.postgres_alone.upload.mb_s} MB/s** (${Math.min(...report.postgres_alone.upload.runs_mb_s)}–${Math.max(...report.postgres_alone.upload.runs_mb_s)}), ` +
      `download **${report.postgres_alone.download.mb_s} MB/s** (${Math.min(...report.postgres_alone.download.runs_mb_s)}–${Math.max(...report.postgres_alone.download.runs_mb_s)}); ` +
      `ours / PostgreSQL alone: upload raw ${(t.upload_raw.ours.mb_s / report.postgres_alone.upload.mb_s).toFixed(2)}, multipart ${(t.upload_multipart.ours.mb_s / report.postgres_alone.upload.mb_s).toFixed(2)}, download ${(t.download.ours.mb_s / report.postgres_alone.download.mb_s).toFixed(2)}.`,
    '',
    `Memory: concurrent uploads of distinct files, each by its own user to its own task; server RSS sampled every ${s.sample_every_ms} ms; idle = median of 1 s right before the burst. Target: growth < ${m.target_growth_mib} MiB (ours). Order: raw upload burst, multipart upload burst, then each burst's files downloaded concurrently (RSS sampled the same way) and their sha256 checked.`,
    '',
    '| Server, upload | Burst | Idle RSS MiB | Peak RSS MiB | Growth MiB | Burst wall time | Download burst RSS MiB: idle / peak / growth | Round-tripped |',
    '|---|---|---|---|---|---|---|---|',
    ...memoryRows,
    '',
    ...(report.failures.length > 0
      ? [`**${report.failures.length} failure(s):**`, '', ...report.failures.slice(0, 20).map((f) => `- ${f}`), '']
      : []),
  ].join('\n');
}

if (values['serve-reference']) await serveReference();
else process.exit(await main());
