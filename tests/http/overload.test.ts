import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { holdTasks } from '../helpers/hold.js';
import { startServer, type TestServer } from '../helpers/server.js';

/**
 * Load shedding with tiny limits: two requests at work, two waiting, each for at most a second.
 * Requests are held at work by the database: the test holds an exclusive lock on the tasks table
 * in a transaction of its own (on PGlite, whose one connection it then holds, everything waits),
 * so a GET that got in waits for it while keeping its place. (An upload no longer holds a place:
 * transfers have their own pool, see capacity.test.ts.)
 */
let server: TestServer;
let token: string;
let taskId: string;

beforeAll(async () => {
  server = await startServer({
    ownDatabase: true, // holdTasks locks the tasks table
    overload: { maxInFlight: 2, maxQueue: 2, maxQueueWaitMs: 1000, maxEventLoopDelayMs: 10_000, maxPoolWaiting: 100 },
  });
  token = await server.tokenFor();
  const { data } = await server.client(token).POST('/api/v1/tasks', { body: { title: 'held by a lock' } });
  taskId = data!.id;
}, 60_000); // a server of its own: its start took over 20 s on a loaded two-core machine
afterAll(() => server.close());

const get = () => fetch(`${server.url}/api/v1/tasks/${taskId}`, { headers: { Authorization: `Bearer ${token}` } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('load shedding', () => {
  it('queues past the in-flight limit, lets the queue in as places free up, and sheds with 503 + Retry-After beyond it', async () => {
    const hold = await holdTasks(server);
    const atWork = [get(), get()];
    await sleep(200); // both admitted: two at work, waiting for the lock

    // Two wait; they get in only as places free up.
    const queued = [get(), get()];
    await sleep(50);
    // A fifth finds the queue full: 503 at once, without waiting its turn.
    const started = Date.now();
    const full = await get();
    expect(Date.now() - started).toBeLessThan(300);
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('1');
    expect(full.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await full.json()).toMatchObject({
      type: 'urn:tasks-api:problem:overloaded',
      status: 503,
      detail: expect.stringContaining('queue is full'),
    });
    // Readiness says so too, while the queue is full (probes themselves never wait or are shed).
    const ready = await fetch(`${server.url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { detail: string }).detail).toContain('at capacity');

    // Both waiting requests wait past a second with the places still held: shed, having done nothing.
    for (const late of await Promise.all(queued)) {
      expect(late.status).toBe(503);
      expect(await late.json()).toMatchObject({
        type: 'urn:tasks-api:problem:overloaded',
        detail: expect.stringContaining('waited too long'),
      });
    }

    // One more waits, and gets in as soon as the held ones finish.
    const admitted = get();
    await sleep(50);
    await hold.release();
    for (const held of await Promise.all(atWork)) expect(held.status).toBe(200);
    expect((await admitted).status).toBe(200);
    expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/http_requests_shed_total\{reason="queue_full"\} 1\b/);
    expect(metrics).toMatch(/http_requests_shed_total\{reason="queue_timeout"\} 2\b/);
    expect(metrics).toMatch(/http_requests_admitted 0\b/);
    expect(metrics).toMatch(/http_requests_queued 0\b/);
  });

  it('gives the place of a client that left the queue to the next one', async () => {
    const hold = await holdTasks(server);
    const atWork = [get(), get()];
    await sleep(200);
    const leaving = new AbortController();
    const gone = fetch(`${server.url}/api/v1/tasks/${taskId}`, {
      headers: { Authorization: `Bearer ${token}` },
      signal: leaving.signal,
    }).catch((error: Error) => error.name);
    await sleep(50);
    const waiting = get();
    await sleep(50);
    leaving.abort();
    expect(await gone).toBe('AbortError');
    await sleep(200); // the server sees the connection close
    // With the leaver gone there is room in the queue for one more; both get in once the held ones finish.
    const another = get();
    await sleep(50);
    await hold.release();
    for (const held of await Promise.all(atWork)) expect(held.status).toBe(200);
    expect((await waiting).status).toBe(200);
    expect((await another).status).toBe(200);
  });

  it('sheds new requests while the event loop stays behind, and not for a single stall', async () => {
    const busy = await startServer({ overload: { maxEventLoopDelayMs: 50 } });
    try {
      const block = (ms: number) => {
        const end = Date.now() + ms;
        while (Date.now() < end); // the server runs in this process: its loop stalls too
      };
      const own = await busy.tokenFor();
      const fetchTask = () => fetch(`${busy.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${own}` } });
      block(800);
      await sleep(600); // one stall, then a calm sample: not saturation
      expect((await fetchTask()).status).toBe(200);
      // The load is a mean over the loop's ticks in a 500 ms window: a window that held many calm
      // ticks before a stall can read low, so three stalls in a row make two windows of stall only.
      for (let i = 0; i < 3; i++) {
        block(800);
        await sleep(20);
      }
      const shed = await fetchTask();
      expect(shed.status).toBe(503);
      expect(await shed.json()).toMatchObject({
        type: 'urn:tasks-api:problem:overloaded',
        detail: expect.stringContaining('too busy'),
      });
      await sleep(1200); // two calm samples
      expect((await fetchTask()).status).toBe(200);
    } finally {
      await busy.close();
    }
  }, 40_000); // stalls the loop on purpose, for seconds
});
