import { request, type ClientRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startServer, type TestServer } from '../helpers/server.js';

/**
 * Load shedding with tiny limits: two requests at work, two waiting, each for at most a second.
 * Requests are held at work by uploads whose body the client sends only when told to: the gate
 * lets a request in when its headers arrive, so an unfinished upload keeps its place.
 */
let server: TestServer;
let token: string;
let taskId: string;

beforeAll(async () => {
  server = await startServer({ overload: { maxInFlight: 2, maxQueue: 2, maxQueueWaitMs: 1000, maxEventLoopDelayMs: 10_000, maxPoolWaiting: 100 } });
  token = await server.tokenFor();
  const { data } = await server.client(token).POST('/api/v1/tasks', { body: { title: 'holds uploads' } });
  taskId = data!.id;
});
afterAll(() => server.close());

/** An upload that has sent its headers and half its body; `finish` sends the rest, and resolves to its status. */
function heldUpload(): { req: ClientRequest; finish: () => Promise<number> } {
  const body = Buffer.from('a note of twenty-two!\n');
  let status!: Promise<number>;
  const req = request(`${server.url}/api/v1/tasks/${taskId}/attachments`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain', 'Content-Length': body.length },
  });
  status = new Promise((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
  });
  req.write(body.subarray(0, 10));
  return { req, finish: () => (req.end(body.subarray(10)), status) };
}

const get = () => fetch(`${server.url}/api/v1/tasks/${taskId}`, { headers: { Authorization: `Bearer ${token}` } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('load shedding', () => {
  it('queues past the in-flight limit, lets the queue in as places free up, and sheds with 503 + Retry-After beyond it', async () => {
    const held = [heldUpload(), heldUpload()];
    await sleep(200); // both admitted: two at work

    // Two wait; the first of them gets in as soon as an upload finishes.
    const queued = [get(), get()];
    await sleep(50);
    // A fifth finds the queue full: 503 at once, without waiting its turn.
    const started = Date.now();
    const full = await get();
    expect(Date.now() - started).toBeLessThan(300);
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('1');
    expect(full.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await full.json()).toMatchObject({ type: 'urn:tasks-api:problem:overloaded', status: 503, detail: expect.stringContaining('queue is full') });
    // Readiness says so too, while the queue is full (probes themselves never wait or are shed).
    const ready = await fetch(`${server.url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { detail: string }).detail).toContain('at capacity');

    // Both waiting requests wait past a second with the uploads still held: shed, having done nothing.
    for (const late of await Promise.all(queued)) {
      expect(late.status).toBe(503);
      expect(await late.json()).toMatchObject({ type: 'urn:tasks-api:problem:overloaded', detail: expect.stringContaining('waited too long') });
    }
    expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);

    // One more waits, and gets in as soon as an upload finishes.
    const admitted = get();
    await sleep(50);
    expect(await held[0]!.finish()).toBe(201);
    expect((await admitted).status).toBe(200);
    expect(await held[1]!.finish()).toBe(201);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/http_requests_shed_total\{reason="queue_full"\} 1\b/);
    expect(metrics).toMatch(/http_requests_shed_total\{reason="queue_timeout"\} 2\b/);
    expect(metrics).toMatch(/http_requests_admitted 0\b/);
    expect(metrics).toMatch(/http_requests_queued 0\b/);
  });

  it('gives the place of a client that left the queue to the next one', async () => {
    const held = [heldUpload(), heldUpload()];
    await sleep(200);
    const leaving = new AbortController();
    const gone = fetch(`${server.url}/api/v1/tasks/${taskId}`, { headers: { Authorization: `Bearer ${token}` }, signal: leaving.signal }).catch((error: Error) => error.name);
    await sleep(50);
    const waiting = get();
    await sleep(50);
    leaving.abort();
    expect(await gone).toBe('AbortError');
    await sleep(200); // the server sees the connection close
    // With the leaver gone there is room in the queue for one more; both get in once uploads finish.
    const another = get();
    await sleep(50);
    await Promise.all(held.map((h) => h.finish()));
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
      block(800);
      await sleep(20);
      block(800);
      await sleep(20);
      const shed = await fetchTask();
      expect(shed.status).toBe(503);
      expect(await shed.json()).toMatchObject({ type: 'urn:tasks-api:problem:overloaded', detail: expect.stringContaining('too busy') });
      await sleep(1200); // two calm samples
      expect((await fetchTask()).status).toBe(200);
    } finally {
      await busy.close();
    }
  });
});
