/**
 * A harness for capacity tests (DESIGN rules 13 and 14): the real server (src/main.ts) as its own
 * process, cheap attacks on raw loopback sockets, and a victim — another user making ordinary
 * authenticated calls — whose every answer is recorded, so a test can say "every victim call was
 * 2xx and answered within N ms for the whole attack".
 *
 * Everything is bounded: attackers are kept at a fixed number of sockets (replaced as the server
 * closes them, up to a total), the victim makes one call at a time with a client timeout, and
 * `Horde.destroy()`, `Victim.stop()`, `ProbeFlood.stop()` and `Target.stop()` end every socket,
 * timer and process they started.
 *
 * When the server closed a connection is read from the kernel (/proc/net/tcp: the server's side of
 * the connection is no longer ESTABLISHED), so it is known even for a socket the attacker never
 * reads from, and never depends on the attacker noticing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { SignJWT } from 'jose';
import pg from 'pg';
import { migratedPgliteDir, startMain } from './process.js';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The server's resident set (VmRSS) in MB; 0 once it is gone. */
export function rssMb(pid: number): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    return kb / 1024;
  } catch {
    return 0;
  }
}

/** Samples a process's RSS every `everyMs` until `stop()`; `peak()` is the highest seen. */
export function rssSampler(pid: number, everyMs = 100): { peak(): number; samples: number[]; stop(): number } {
  const samples: number[] = [rssMb(pid)];
  const timer = setInterval(() => samples.push(rssMb(pid)), everyMs);
  const peak = () => Math.max(...samples);
  return {
    peak,
    samples,
    stop() {
      clearInterval(timer);
      samples.push(rssMb(pid));
      return peak();
    },
  };
}

export interface Target {
  url: string;
  port: number;
  /** The server process (node itself, not a wrapper process). */
  pid: number;
  /** PGlite's data directory, when the server runs on PGlite (readable once the server is stopped). */
  dataDir?: string;
  /** Which database the server runs on. */
  database: 'pglite' | 'postgres';
  /** A real HS256 token the server accepts, for `sub` (a fresh user when omitted). */
  tokenFor(sub?: string): Promise<string>;
  /** An ordinary JSON call with fetch. */
  call(
    token: string | undefined,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown; headers: Headers }>;
  /** GET /metrics (with METRICS_TOKEN), as text. */
  metrics(): Promise<string>;
  rssMb(): number;
  /** Everything the server wrote (stdout and stderr). */
  output(): string;
  /** SIGTERM, SIGKILL after 15 s; removes PGlite's directory or drops the scratch database unless `keepData`. Safe to call twice. */
  stop(options?: { keepData?: boolean }): Promise<number | null>;
  /**
   * Reads the server's database directly, as its owner (past row-level security), once the server
   * is stopped with `keepData` (PGlite is one process's; PostgreSQL could be read any time).
   */
  inspect<T>(
    read: (query: (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>) => Promise<T>,
  ): Promise<T>;
  /** What `stop({ keepData: true })` kept: removed. */
  removeData(): Promise<void>;
}

/**
 * The real server in production mode: a generated JWT_SECRET (so tests sign tokens for any sub),
 * METRICS_TOKEN, rate limits out of the way (the caps under test are concurrency, not requests
 * per minute) and no in-process webhook worker (its queue's polling is noise here). Its database:
 * a scratch PostgreSQL database beside `postgres` (a server URL, e.g. TEST_DATABASE_URL; dropped
 * by `stop`), else PGlite in a temporary directory. `env` overrides any of it.
 */
export async function startTarget(
  env: Record<string, string> = {},
  options: {
    postgres?: string;
    /** The URL the server is given for the scratch database (a proxy in front of it), instead of the database's own. */
    through?: (scratchUrl: string) => Promise<string>;
    startTimeoutMs?: number;
  } = {},
): Promise<Target> {
  const secret = randomBytes(32).toString('base64url');
  const metricsToken = randomBytes(16).toString('hex');
  const scratch = options.postgres === undefined ? undefined : await scratchPostgres(options.postgres);
  const dataDir = scratch === undefined ? migratedPgliteDir('tasks-capacity-') : undefined;
  const cleanUp = async () => {
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
    await scratch?.drop();
  };
  let server: Awaited<ReturnType<typeof startMain>>;
  try {
    const databaseUrl =
      scratch === undefined
        ? undefined
        : options.through === undefined
          ? scratch.url
          : await options.through(scratch.url);
    server = await startMain(
      {
        JWT_SECRET: secret,
        METRICS_TOKEN: metricsToken,
        ...(scratch === undefined
          ? { PGLITE_DIR: dataDir! }
          : {
              DATABASE_URL: databaseUrl!,
              DATABASE_PREPARED_STATEMENTS: process.env.TEST_DATABASE_PREPARED_STATEMENTS ?? 'on',
            }),
        RATE_LIMIT_PER_MINUTE: '1000000',
        WEBHOOK_WORKER: 'off',
        ...env,
      },
      { timeoutMs: options.startTimeoutMs ?? 40_000 },
    );
  } catch (error) {
    await cleanUp();
    throw error;
  }
  const { child, url, exited } = server;
  let exitCode: Promise<number | null> | undefined;
  return {
    url,
    port: Number(new URL(url).port),
    pid: child.pid!,
    dataDir,
    database: scratch === undefined ? 'pglite' : 'postgres',
    tokenFor: (sub = `user-${randomUUID()}`) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime('30m')
        .sign(new TextEncoder().encode(secret)),
    async call(token, method, path, body) {
      const headers: Record<string, string> = {};
      if (token !== undefined) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(`${url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        // not JSON: kept as text
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async metrics() {
      const res = await fetch(`${url}/metrics`, {
        headers: { Authorization: `Bearer ${metricsToken}` },
        signal: AbortSignal.timeout(10_000),
      });
      return res.text();
    },
    rssMb: () => rssMb(child.pid!),
    output: server.output,
    async inspect(read) {
      if (scratch !== undefined) {
        const client = new pg.Client({ connectionString: scratch.url });
        await client.connect();
        try {
          return await read(async (text, params) => (await client.query<Record<string, unknown>>(text, params)).rows);
        } finally {
          await client.end();
        }
      }
      if (child.exitCode === null && child.signalCode === null)
        throw new Error('PGlite is read once the server has stopped');
      const { PGlite } = await import('@electric-sql/pglite');
      const db = new PGlite(dataDir);
      try {
        return await read(async (text, params) => (await db.query<Record<string, unknown>>(text, params)).rows);
      } finally {
        await db.close();
      }
    },
    removeData: cleanUp,
    stop(options = {}) {
      exitCode ??= (async () => {
        let code = child.exitCode;
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          code = await exited;
          clearTimeout(killer);
        }
        if (!options.keepData) await cleanUp();
        return code;
      })();
      return exitCode;
    },
  };
}

/** Creates a task for `token`'s user; its id. */
export async function createTask(target: Target, token: string, title = 'a task'): Promise<string> {
  const { status, body } = await target.call(token, 'POST', '/api/v1/tasks', { title });
  if (status !== 201) throw new Error(`creating a task answered ${status}: ${JSON.stringify(body)}`);
  return (body as { id: string }).id;
}

/** Uploads `bytes` as a raw body to a task; the attachment's id. */
export async function uploadAttachment(
  target: Target,
  token: string,
  taskId: string,
  bytes: Buffer,
  contentType: string,
): Promise<string> {
  const res = await fetch(`${target.url}/api/v1/tasks/${taskId}/attachments`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${token}`,
      'Content-Type': contentType,
      'Content-Disposition': 'attachment; filename="big.png"',
    },
    body: bytes,
    signal: AbortSignal.timeout(60_000),
  });
  const body = await res.text();
  if (res.status !== 201) throw new Error(`uploading answered ${res.status}: ${body}`);
  return (JSON.parse(body) as { id: string }).id;
}

// ---------------------------------------------------------------------------------------------
// What the kernel says about the server's side of each connection.

/** TCP states of /proc/net/tcp in which the server still holds the connection open (ESTABLISHED, SYN_RECV). */
const OPEN_STATES = new Set(['01', '03']);

/**
 * The state of the server's side of every IPv4 connection to `serverPort`, by the client's port:
 * the rows whose local port is the server's. A connection the server closed is in FIN_WAIT*,
 * TIME_WAIT, CLOSE… or gone (reset).
 */
export function serverSideStates(serverPort: number): Map<number, string> {
  const states = new Map<number, string>();
  const text = readFileSync('/proc/net/tcp', 'utf8');
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4) continue;
    const [, local, remote, state] = fields as [string, string, string, string];
    if (Number.parseInt(local.split(':')[1]!, 16) !== serverPort) continue;
    states.set(Number.parseInt(remote.split(':')[1]!, 16), state);
  }
  return states;
}

// ---------------------------------------------------------------------------------------------
// Attackers on raw sockets.

export interface Conn {
  kind: string;
  socket: Socket;
  /** Date.now() when the connection was opened, connected, and its request head written. */
  openedAt: number;
  connectedAt?: number;
  sentAt?: number;
  localPort?: number;
  /** The first 16 KiB the server sent (latin1). */
  said: string;
  received: number;
  firstByteAt?: number;
  /** When the server ended the connection, as far as we could see (its FIN, a reset, a write refused, or the kernel's state of its side). */
  closedAt?: number;
  closedHow?: string;
  /** We ended it (cleanup); not the server. */
  destroyedByUs: boolean;
  error?: string;
  /** Set by the horde once it has reacted to the close (replaced it). */
  handled?: boolean;
  timers: NodeJS.Timeout[];
}

/** The status, headers and (start of the) body of the first response on a connection. */
export function responseOf(conn: Conn): { status?: number; headers: Record<string, string>; body: string } {
  const end = conn.said.indexOf('\r\n\r\n');
  if (!conn.said.startsWith('HTTP/1.1 ') || end < 0) return { headers: {}, body: '' };
  const [statusLine, ...lines] = conn.said.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: conn.said.slice(end + 4) };
}

/**
 * What a connection got, in one line for tallies: `429 urn:tasks-api:problem:concurrency-limited
 * retry-after`, `200`, `no answer`, …
 */
export function verdictOf(conn: Conn): string {
  const { status, headers, body } = responseOf(conn);
  if (status === undefined)
    return conn.said === '' ? 'no answer' : `unparsed: ${JSON.stringify(conn.said.slice(0, 40))}`;
  const type = headers['content-type']?.startsWith('application/problem+json')
    ? /"type"\s*:\s*"([^"]+)"/.exec(body)?.[1]
    : undefined;
  return [
    String(status),
    type,
    status === 429 || status === 503
      ? headers['retry-after'] !== undefined
        ? 'retry-after'
        : 'no retry-after'
      : undefined,
  ]
    .filter(Boolean)
    .join(' ');
}

/** Counts of each distinct value. */
export function tally(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

const SAID_LIMIT = 16 * 1024;

/**
 * A raw connection to the server that, once connected, writes what `request` writes. With
 * `pauseAfterHead`, it reads the first chunk the server sends (the response's head) and then
 * never reads again: the socket's buffer fills, then the kernel's, then the server's writes stall.
 */
export function openConn(
  target: Pick<Target, 'port'>,
  kind: string,
  request: (conn: Conn) => void,
  options: { pauseAfterHead?: boolean } = {},
): Conn {
  const socket = connect(target.port, '127.0.0.1');
  const conn: Conn = { kind, socket, openedAt: Date.now(), said: '', received: 0, destroyedByUs: false, timers: [] };
  let paused = false;
  const closed = (how: string) => {
    for (const timer of conn.timers) clearInterval(timer);
    if (conn.closedAt === undefined && !conn.destroyedByUs) {
      conn.closedAt = Date.now();
      conn.closedHow = how;
    }
  };
  socket.on('connect', () => {
    conn.connectedAt = Date.now();
    conn.localPort = socket.localPort;
    request(conn);
  });
  socket.on('data', (chunk: Buffer) => {
    conn.firstByteAt ??= Date.now();
    conn.received += chunk.length;
    if (conn.said.length < SAID_LIMIT) conn.said += chunk.subarray(0, SAID_LIMIT - conn.said.length).toString('latin1');
    if (options.pauseAfterHead && !paused && conn.said.includes('\r\n\r\n')) {
      paused = true; // once: a later resume (drainClosed) reads on
      socket.pause();
    }
  });
  socket.on('end', () => closed('fin'));
  socket.on('error', (error: NodeJS.ErrnoException) => {
    conn.error ??= error.code ?? error.message;
    closed(error.code ?? 'error');
  });
  socket.on('close', () => closed('close'));
  return conn;
}

/** Writes `bytes` to the connection every `everyMs` while it is open: a body that trickles in. */
function trickle(conn: Conn, bytes: Buffer, everyMs: number): void {
  conn.timers.push(
    setInterval(() => {
      if (conn.socket.writable && !conn.socket.destroyed) conn.socket.write(bytes);
    }, everyMs),
  );
}

/**
 * POST /api/v1/tasks with a JSON body of `contentLength` bytes that arrives at 1 byte a second
 * (whitespace, which JSON allows), with or without a bearer token.
 */
export function slowJsonBody(
  target: Pick<Target, 'port'>,
  options: { token?: string; contentLength?: number; path?: string } = {},
): Conn {
  const { token, contentLength = 20_000, path = '/api/v1/tasks' } = options;
  return openConn(target, token === undefined ? 'slow-body' : 'slow-body-token', (conn) => {
    conn.socket.write(
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n` +
        `${token === undefined ? '' : `Authorization: Bearer ${token}\r\n`}\r\n{`,
    );
    conn.sentAt = Date.now();
    trickle(conn, Buffer.from(' '), 1000);
  });
}

/** The 8 bytes every PNG starts with. */
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * A raw upload (POST /api/v1/tasks/{taskId}/attachments) of `contentLength` bytes declared as
 * `contentType`, with a token: the headers and a PNG signature, then 1 byte a second.
 */
export function slowUpload(
  target: Pick<Target, 'port'>,
  options: { token: string; taskId: string; contentType?: string; contentLength?: number },
): Conn {
  const { token, taskId, contentType = 'image/png', contentLength = 1_000_000 } = options;
  return openConn(target, 'slow-upload', (conn) => {
    conn.socket.write(
      `POST /api/v1/tasks/${taskId}/attachments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: ${contentType}\r\nContent-Disposition: attachment; filename="slow.png"\r\nContent-Length: ${contentLength}\r\n\r\n`,
    );
    conn.socket.write(PNG_SIGNATURE);
    conn.sentAt = Date.now();
    trickle(conn, Buffer.from([0]), 1000);
  });
}

/** GET an attachment's content, read the response's head, and never read anything more. */
export function stalledDownload(target: Pick<Target, 'port'>, options: { token: string; attachmentId: string }): Conn {
  return openConn(
    target,
    'stalled-download',
    (conn) => {
      conn.socket.write(
        `GET /api/v1/attachments/${options.attachmentId}/content HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${options.token}\r\n\r\n`,
      );
      conn.sentAt = Date.now();
    },
    { pauseAfterHead: true },
  );
}

/**
 * Reads what is left on a connection the server has closed (a paused downloader): the rest of
 * what the kernel buffered, until its end, an error or `timeoutMs`; then destroys it.
 */
export async function drainClosed(conn: Conn, timeoutMs = 3000): Promise<void> {
  if (conn.socket.destroyed) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      conn.destroyedByUs = true;
      conn.socket.destroy();
      resolve();
    }
    conn.socket.once('close', done);
    conn.socket.once('end', done);
    conn.socket.resume();
  });
}

/**
 * `size` attacker connections opened by `open`, each replaced (while running) once the server has
 * closed it, at most `maxTotal` in all. A watcher reads the kernel's view every 200 ms, so a
 * connection the attacker never reads from is still seen closed.
 */
export class Horde {
  readonly conns: Conn[] = [];
  private running = false;
  private watcher?: NodeJS.Timeout;
  /** When `start()` and `stop()` were called. */
  startedAt?: number;
  stoppedAt?: number;

  constructor(
    private readonly target: Pick<Target, 'port'>,
    private readonly size: number,
    private readonly open: () => Conn,
    private readonly options: { maxTotal?: number; onServerClosed?: (conn: Conn) => void } = {},
  ) {}

  start(): this {
    this.running = true;
    this.startedAt = Date.now();
    for (let i = 0; i < this.size; i += 1) this.conns.push(this.open());
    this.watcher = setInterval(() => this.watch(), 200);
    return this;
  }

  /** Opens no more replacements; what is open stays open. */
  stop(): void {
    this.running = false;
    this.stoppedAt ??= Date.now();
  }

  /** Connections the server has not closed (yet). */
  openConns(): Conn[] {
    return this.conns.filter((c) => c.closedAt === undefined && !c.destroyedByUs);
  }

  private watch(): void {
    let states: Map<number, string> | undefined;
    try {
      states = serverSideStates(this.target.port);
    } catch {
      states = undefined;
    }
    const now = Date.now();
    for (const conn of this.conns) {
      if (conn.closedAt === undefined && !conn.destroyedByUs && conn.localPort !== undefined && states !== undefined) {
        const state = states.get(conn.localPort);
        if (state === undefined || !OPEN_STATES.has(state)) {
          conn.closedAt = now;
          conn.closedHow = `server side ${state ?? 'gone'}`;
          for (const timer of conn.timers) clearInterval(timer);
        }
      }
    }
    for (const conn of [...this.conns]) {
      if (conn.closedAt === undefined || conn.handled) continue;
      conn.handled = true;
      this.options.onServerClosed?.(conn);
      if (this.running && this.conns.length < (this.options.maxTotal ?? 2000)) this.conns.push(this.open());
    }
  }

  /** Waits until the server has closed every connection, or `deadline` (a Date.now() value) passes. */
  async settle(deadline: number): Promise<void> {
    while (this.openConns().length > 0 && Date.now() < deadline) await sleep(100);
    this.watch();
  }

  /** Ends every connection and the watcher. */
  destroy(): void {
    this.running = false;
    clearInterval(this.watcher);
    for (const conn of this.conns) {
      for (const timer of conn.timers) clearInterval(timer);
      if (!conn.socket.destroyed) {
        if (conn.closedAt === undefined) conn.destroyedByUs = true;
        conn.socket.destroy();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The victim.

export interface VictimCall {
  op: string;
  /** ms since the victim started. */
  at: number;
  ms: number;
  /** 0: no answer (the error is in `detail`). */
  status: number;
  detail?: string;
}

export interface Victim {
  calls: VictimCall[];
  /** Stops after the call in progress; every call made. */
  stop(): Promise<VictimCall[]>;
}

/**
 * An ordinary user: one call at a time, alternately GET /api/v1/tasks and POST /api/v1/tasks,
 * `pauseMs` apart, each with a client timeout of `timeoutMs`, recording status and latency.
 */
export function startVictim(
  target: Pick<Target, 'url'>,
  token: string,
  options: { pauseMs?: number; timeoutMs?: number } = {},
): Victim {
  const { pauseMs = 50, timeoutMs = 10_000 } = options;
  const calls: VictimCall[] = [];
  const started = Date.now();
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i += 1) {
      const create = i % 2 === 1;
      const op = create ? 'POST /api/v1/tasks' : 'GET /api/v1/tasks';
      const t0 = performance.now();
      const at = Date.now() - started;
      try {
        const res = await fetch(`${target.url}/api/v1/tasks`, {
          method: create ? 'POST' : 'GET',
          headers: { Authorization: `Bearer ${token}`, ...(create ? { 'Content-Type': 'application/json' } : {}) },
          body: create ? JSON.stringify({ title: `victim task ${i}` }) : undefined,
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await res.text();
        calls.push({
          op,
          at,
          ms: Math.round(performance.now() - t0),
          status: res.status,
          detail: res.ok ? undefined : text.slice(0, 300),
        });
      } catch (error) {
        calls.push({
          op,
          at,
          ms: Math.round(performance.now() - t0),
          status: 0,
          detail: String((error as Error).cause ?? error),
        });
      }
      await sleep(pauseMs);
    }
  })();
  return {
    calls,
    async stop() {
      running = false;
      await loop;
      return calls;
    },
  };
}

/** The victim's calls that were not 2xx within `maxMs`, one line each (empty: all served in time). */
export function victimFailures(calls: VictimCall[], maxMs: number): string[] {
  return calls
    .filter((c) => c.status < 200 || c.status > 299 || c.ms >= maxMs)
    .map(
      (c) =>
        `${c.op} at +${c.at} ms: ${c.status === 0 ? 'no answer' : c.status} after ${c.ms} ms${c.detail ? ` ${c.detail}` : ''}`,
    );
}

/** Count, max, p50 and p99 of the victim's latencies, for the test's log. */
export function latencySummary(calls: VictimCall[]): { calls: number; p50: number; p99: number; max: number } {
  const ms = calls.map((c) => c.ms).sort((a, b) => a - b);
  const at = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] ?? 0;
  return { calls: ms.length, p50: at(0.5), p99: at(0.99), max: ms[ms.length - 1] ?? 0 };
}

// ---------------------------------------------------------------------------------------------
// Probe flood.

export interface FloodReport {
  responses: number;
  statuses: Record<string, number>;
  /** Connections the server closed (each reopened while the flood ran). */
  closed: number;
  errors: Record<string, number>;
}

/**
 * `connections` keep-alive connections, each sending GET `path` again as soon as the last answer
 * is in, until `stop()`.
 */
export function probeFlood(
  target: Pick<Target, 'port'>,
  options: { connections?: number; path?: string } = {},
): { stop(): Promise<FloodReport> } {
  const { connections = 200, path = '/health/ready' } = options;
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const report: FloodReport = { responses: 0, statuses: {}, closed: 0, errors: {} };
  const sockets = new Set<Socket>();
  let running = true;
  const one = () => {
    if (!running) return;
    const socket = connect(target.port, '127.0.0.1');
    sockets.add(socket);
    let buffer: Buffer = Buffer.alloc(0);
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffer.length < end + 4 + length) return;
        const status = head.slice(9, 12);
        report.statuses[status] = (report.statuses[status] ?? 0) + 1;
        report.responses += 1;
        buffer = buffer.subarray(end + 4 + length);
        if (running) socket.write(request);
        else socket.destroy();
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const code = error.code ?? error.message;
      report.errors[code] = (report.errors[code] ?? 0) + 1;
    });
    socket.on('close', () => {
      sockets.delete(socket);
      if (running) {
        report.closed += 1;
        setTimeout(one, 10);
      }
    });
  };
  for (let i = 0; i < connections; i += 1) one();
  return {
    async stop() {
      running = false;
      for (const socket of sockets) socket.destroy();
      while (sockets.size > 0) await sleep(10);
      return report;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a database of its own, and a proxy that counts the statements the server sends.

/** A fresh PostgreSQL database beside `base`'s, dropped by `drop()`. */
export async function scratchPostgres(base: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `tasks_capacity_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    async drop() {
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      try {
        await client.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}

/**
 * A TCP proxy on loopback in front of PostgreSQL that reads the protocol's framing from the client
 * and counts every statement by its text: simple queries ('Q') and the statements of extended-
 * protocol Parse messages ('P'). A named statement prepared once and executed again is counted
 * once (its Executes are counted under `executes`).
 */
export async function countingPgProxy(
  target: string,
): Promise<{ url: string; count(pattern: RegExp): number; executes(): number; close(): Promise<void> }> {
  const upstream = new URL(target);
  const counts = new Map<string, number>();
  let executes = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const up = connect(Number(upstream.port || 5432), upstream.hostname);
    sockets.add(client).add(up);
    let buffer: Buffer = Buffer.alloc(0);
    let started = false;
    const count = (text: string) => counts.set(text, (counts.get(text) ?? 0) + 1);
    client.on('data', (chunk: Buffer) => {
      up.write(chunk);
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      for (;;) {
        if (!started) {
          // The startup message (or an SSLRequest): a length, no type byte.
          if (buffer.length < 4) return;
          const length = buffer.readUInt32BE(0);
          if (buffer.length < length) return;
          const code = buffer.readUInt32BE(4);
          buffer = buffer.subarray(length);
          if (code !== 80877103) started = true; // not SSLRequest: the startup message itself
          continue;
        }
        if (buffer.length < 5) return;
        const length = 1 + buffer.readUInt32BE(1);
        if (buffer.length < length) return;
        const type = String.fromCharCode(buffer[0]!);
        const body = buffer.subarray(5, length);
        if (type === 'Q') count(body.subarray(0, body.indexOf(0)).toString('utf8'));
        if (type === 'P') {
          const nameEnd = body.indexOf(0);
          const rest = body.subarray(nameEnd + 1);
          count(rest.subarray(0, rest.indexOf(0)).toString('utf8'));
        }
        if (type === 'E') executes += 1;
        buffer = buffer.subarray(length);
      }
    });
    up.on('data', (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  return {
    url: url.href,
    count: (pattern) => [...counts].filter(([text]) => pattern.test(text)).reduce((sum, [, n]) => sum + n, 0),
    executes: () => executes,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Metrics, read loosely (the names of the newest counters may still change).

/** The sum of every sample of the metrics whose line (name and labels) matches `pattern`; undefined when none does. */
export function metricSum(text: string, pattern: RegExp): number | undefined {
  const values = text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#') && pattern.test(line.slice(0, line.lastIndexOf(' '))))
    .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0);
}

/** At most `n` entries of a list of failures, and how many more there were: readable when an assertion on it fails. */
export function few(list: string[], n = 8): string[] {
  return list.length <= n ? list : [...list.slice(0, n), `… and ${list.length - n} more`];
}

/** The most of these [start, end) spans that were in progress at one moment. */
export function mostAtOnce(spans: (readonly [number, number])[]): number {
  return Math.max(0, ...spans.map(([start]) => spans.filter(([s, e]) => s <= start && start < e).length));
}

/** The metric `name`'s value (the sum over its labels), undefined when the text has none. */
export const metricValue = (text: string, name: string): number | undefined =>
  metricSum(text, new RegExp(`^${name}(\\{.*\\})?$`));

/** For each verdict, how long after its request head the server closed those connections (median and max ms), for the test's log. */
export function closingSummary(conns: Conn[]): Record<string, string> {
  const byVerdict = new Map<string, number[]>();
  for (const conn of conns) {
    const list = byVerdict.get(verdictOf(conn)) ?? [];
    list.push(conn.closedAt === undefined ? Number.POSITIVE_INFINITY : conn.closedAt - (conn.sentAt ?? conn.openedAt));
    byVerdict.set(verdictOf(conn), list);
  }
  return Object.fromEntries(
    [...byVerdict].map(([verdict, ms]) => {
      ms.sort((a, b) => a - b);
      return [verdict, `${ms.length}, closed after ${ms[ms.length >> 1]} ms (max ${ms[ms.length - 1]})`];
    }),
  );
}
