import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/database.js';
import { busyCores } from '../helpers/contention.js';
import { migratedPgliteDir, startMain } from '../helpers/process.js';

const dataDir = migratedPgliteDir('tasks-shutdown-');
let contention: { stop: () => void } | undefined;
afterAll(() => {
  contention?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Answer {
  status: number | string;
  headers: IncomingHttpHeaders;
  body: string;
  reusedSocket: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('graceful shutdown under load', () => {
  it('SIGTERM turns readiness 503 at once, lets every request already sent finish with Connection: close, keeps every acknowledged write, exits 0', async () => {
    const secret = randomBytes(32).toString('base64url');
    // No drain window at all: that every request sent is answered may not depend on the event
    // loop reading it within some window (with the default 500 ms, a busy machine cut 1 run in 5).
    const { child, url, exited, output } = await startMain({
      JWT_SECRET: secret,
      PGLITE_DIR: dataDir,
      SHUTDOWN_DRAIN_MS: '0',
      SHUTDOWN_TIMEOUT_MS: '20000',
      // One user's 158 requests at once, all of which must be answered: room for them all.
      CONCURRENCY_PER_USER: '200',
      OVERLOAD_MAX_IN_FLIGHT: '256',
    });
    const token = await hs256Token(secret, 'shutdown-user', '5m');
    // Two cores spun by other processes: the server reads its sockets late, as on a busy machine.
    contention = busyCores(2);

    let connected = 0;
    let signalledAt: number | undefined;
    // `held` bytes of the body are sent only when `release` is called.
    // `socket`: a connection opened earlier, on which nothing has been sent yet.
    const send = (
      path: string,
      options: {
        method?: string;
        agent?: Agent;
        socket?: Socket;
        body?: unknown;
        held?: number;
        release?: Promise<void>;
      } = {},
    ) =>
      new Promise<Answer>((resolve) => {
        const body = options.body === undefined ? undefined : JSON.stringify(options.body);
        const req = request(
          `${url}${path}`,
          {
            method: options.method ?? 'GET',
            ...(options.socket ? { createConnection: () => options.socket! } : { agent: options.agent ?? false }),
            headers: {
              Authorization: `Bearer ${token}`,
              ...(body === undefined
                ? {}
                : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }),
            },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (text += chunk));
            res.on('end', () => {
              resolve({ status: res.statusCode!, headers: res.headers, body: text, reusedSocket: req.reusedSocket });
            });
          },
        );
        req.on('socket', (socket) => socket.once('connect', () => (connected += 1)));
        req.on('error', (error) =>
          resolve({
            status: `${path}: ${error.message} ${Date.now() - (signalledAt ?? Date.now())} ms after SIGTERM`,
            headers: {},
            body: '',
            reusedSocket: req.reusedSocket,
          }),
        );
        if (body === undefined || !options.held || !options.release) {
          req.end(body);
          return;
        }
        req.write(body.slice(0, -options.held));
        void options.release.then(() => req.end(body.slice(-options.held!)));
      });
    const create = (title: string, agent?: Agent) => send('/api/v1/tasks', { method: 'POST', body: { title }, agent });
    let signalTaken!: () => void;
    const shuttingDown = new Promise<void>((resolve) => (signalTaken = resolve));

    // A keep-alive client with a few connections, each of which has served a request already.
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 4 });
    const warm = await Promise.all(Array.from({ length: 4 }, (_, i) => create(`keep-alive warm-up ${i}`, keepAlive)));
    expect(warm.map((answer) => answer.status)).toEqual([201, 201, 201, 201]);

    // Each request on its own connection, opened at once (fetch would queue some in its pool,
    // and those would not be in flight when the signal arrives).
    const burst = Array.from({ length: 150 }, (_, i) => create(`in flight ${i}`));
    // Signal once every one of them is connected: most still wait in the kernel's accept queue,
    // their request unread (Node accepts one connection per event-loop iteration).
    while (connected < 4 + 150) await sleep(2);
    // The keep-alive connections send their next request, all but the body's last bytes, and the
    // signal comes: those requests are surely in flight when the process takes it.
    const onKeepAlive = Array.from({ length: 4 }, (_, i) =>
      send('/api/v1/tasks', {
        method: 'POST',
        body: { title: `keep-alive in flight ${i}` },
        agent: keepAlive,
        held: 2,
        release: shuttingDown,
      }),
    );
    // Two connections a load balancer's probe has opened, their requests not yet sent.
    const { port } = new URL(url);
    const probes = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<Socket>((resolve) => {
            const socket = connect(Number(port), '127.0.0.1', () => resolve(socket));
            socket.on('error', () => undefined); // reported by the request sent on it
          }),
      ),
    );
    child.kill('SIGTERM');
    signalledAt = Date.now();

    // As soon as the process has taken the signal, readiness says 503 while requests are still answered.
    while (!output().includes('"message":"shutting down"') && child.exitCode === null) await sleep(2);
    signalTaken();
    const [ready, live] = await Promise.all([
      send('/health/ready', { socket: probes[0] }),
      send('/health/live', { socket: probes[1] }),
    ]);
    const statuses = (await Promise.all(burst)).map((answer) => answer.status);
    const inFlight = await Promise.all(onKeepAlive);

    expect(statuses.filter((status) => status !== 201)).toEqual([]);
    expect(ready.status).toBe(503);
    expect(ready.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(ready.headers['retry-after']).toBeDefined();
    expect(ready.headers.connection).toBe('close');
    expect(JSON.parse(ready.body)).toMatchObject({ type: 'urn:tasks-api:problem:service-unavailable', status: 503 });
    expect(live.status).toBe(200);
    expect(live.headers.connection).toBe('close');
    // Every keep-alive request in flight at the signal is answered, and told the connection closes.
    expect(inFlight.map((answer) => [answer.status, answer.reusedSocket, answer.headers.connection])).toEqual(
      Array.from({ length: 4 }, () => [201, true, 'close']),
    );
    expect(await exited).toBe(0);
    contention.stop();
    keepAlive.destroy();
    expect(output()).toContain('"message":"stopped"');
    expect(output()).not.toContain('shutdown timed out');
    // New connections are refused once it is gone.
    await expect(fetch(`${url}/health/live`)).rejects.toThrow();

    // Every 201 is in the database.
    const database = await openDatabase({ pgliteDir: dataDir });
    try {
      const { rows } = await sql<{
        n: number;
      }>`select count(*)::int as n from tasks where owner_id = 'shutdown-user'`.execute(database.db);
      expect(rows[0]!.n).toBe(4 + 150 + 4);
    } finally {
      await database.close();
    }
  }, 60_000);
});
