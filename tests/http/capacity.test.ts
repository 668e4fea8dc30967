import { randomBytes, randomUUID } from 'node:crypto';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createClient } from 'redis';
import { createServer } from 'node:http';
import { createHttpServer } from '../../src/http/http-server.js';
import { sharedCheck } from '../../src/http/operations-endpoints.js';
import { startServer, type TestServer } from '../helpers/server.js';

/**
 * Capacity is isolated per principal (DESIGN rule 13): per-user and per-IP concurrency caps
 * (429 concurrency-limited), the JSON body deadline (408), transfers in a pool of their own with
 * per-user caps and a minimum rate, and readiness that a flood of probes cannot turn into a flood
 * of pings. The attacks of the outside review, against a real server process, are in
 * the capacity-*.process.test.ts files (tests/http, tests/attachments).
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw connection that sends `head` (and then nothing, or what `act` does); what the server said and when it closed. */
function rawClient(url: string, head: string, act: (socket: Socket) => void = () => undefined) {
  const { port } = new URL(url);
  let said = '';
  const started = Date.now();
  const socket = connect(Number(port), '127.0.0.1', () => {
    socket.write(head);
    act(socket);
  });
  socket.on('data', (chunk) => (said += chunk.toString()));
  socket.on('error', () => undefined);
  const closed = new Promise<{ ms: number; said: string }>((resolve) =>
    socket.on('close', () => resolve({ ms: Date.now() - started, said })),
  );
  return { socket, closed, said: () => said };
}

/** A POST /api/v1/tasks whose JSON body never comes (its first byte only). */
const stalledCreate = (url: string, token?: string) =>
  rawClient(
    url,
    `POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}\r\n{`,
  );

/** An upload of `size` bytes of which only the first ten are sent. */
const stalledUpload = (url: string, token: string, taskId: string, size = 5000) =>
  rawClient(
    url,
    `POST /api/v1/tasks/${taskId}/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: text/plain\r\nContent-Length: ${size}\r\n\r\n0123456789`,
  );

/** An upload in progress well above the minimum rate (4 KiB every 100 ms) that never ends in a test's time. */
function movingUpload(url: string, token: string, taskId: string) {
  const client = rawClient(
    url,
    `POST /api/v1/tasks/${taskId}/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: text/plain\r\nContent-Length: 5000000\r\n\r\n`,
  );
  const timer = setInterval(() => client.socket.writable && client.socket.write('a'.repeat(4096)), 100);
  client.socket.on('close', () => clearInterval(timer));
  return client;
}

const statusOf = (said: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(said)?.[1]);
const bodyOf = (said: string) => JSON.parse(said.slice(said.indexOf('\r\n\r\n') + 4)) as { type: string };

async function newTask(server: TestServer, token: string): Promise<string> {
  const { data } = await server.client(token).POST('/api/v1/tasks', { body: { title: 'with files' } });
  return data!.id;
}

describe('per-principal concurrency', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ capacity: { perUser: 2, perIp: 2, bodyTimeoutMs: 1500 } });
  });
  afterAll(() => server.close());

  it('answers 429 concurrency-limited to a user with as many requests in progress as the cap, and serves everyone else', async () => {
    const token = await server.tokenFor();
    const held = [stalledCreate(server.url, token), stalledCreate(server.url, token)];
    await sleep(200);
    const over = await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } });
    expect(over.status).toBe(429);
    expect(over.headers.get('retry-after')).toBe('1');
    expect(await over.json()).toMatchObject({
      type: 'urn:tasks-api:problem:concurrency-limited',
      status: 429,
      detail: expect.stringContaining('2 requests in progress for this user'),
    });
    // Another user, and requests without a token from the same address, are not this user's share.
    expect(
      (await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${await server.tokenFor()}` } }))
        .status,
    ).toBe(200);
    expect((await fetch(`${server.url}/api/v1/tasks`)).status).toBe(401);
    // The held bodies time out (408, connection closed), and the user's places are free again.
    for (const { said } of await Promise.all(held.map((h) => h.closed))) expect(statusOf(said)).toBe(408);
    expect((await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(
      200,
    );
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/http_requests_concurrency_limited_total\{cap="user"\} 1\b/);
    expect(metrics).toMatch(/http_request_body_timeouts_total 2\b/);
  });

  it('caps requests without a valid token per client IP; a valid token is never counted against its address', async () => {
    const held = [stalledCreate(server.url), stalledCreate(server.url, 'not-a-token')];
    await sleep(200);
    const over = await fetch(`${server.url}/api/v1/tasks`);
    expect(over.status).toBe(429);
    expect(await over.json()).toMatchObject({
      type: 'urn:tasks-api:problem:concurrency-limited',
      detail: expect.stringContaining('from this address without a valid token'),
    });
    expect(
      (await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${await server.tokenFor()}` } }))
        .status,
    ).toBe(200);
    // Probes are no principal's: they are never limited.
    expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
    // One more slow body is refused before a byte of it is read, and its connection closes with
    // the answer: the refused client holds nothing, not even a connection.
    const refused = stalledCreate(server.url);
    const { ms, said } = await refused.closed;
    expect(statusOf(said)).toBe(429);
    expect(said).toMatch(/\r\nConnection: close\r\n/i);
    expect(ms).toBeLessThan(1000);
    for (const h of held) h.socket.destroy();
  });
});

describe('clients that leave early', () => {
  it('take no place of the gate when they leave while their token is being verified', async () => {
    // Keys from a JWKS that answers after 500 ms: the first request's verification waits for it.
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const jwks = createServer((_req, res) => {
      setTimeout(
        () =>
          void exportJWK(publicKey).then((jwk) =>
            res
              .setHeader('Content-Type', 'application/json')
              .end(JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg: 'EdDSA' }] })),
          ),
        500,
      );
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const server = await startServer({
      jwt: {
        secret: undefined,
        issuer: undefined,
        jwksUrl: new URL(`http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`),
      },
      overload: { maxInFlight: 1, maxQueue: 0 },
    });
    try {
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
        .setSubject(`user-${randomUUID()}`)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
      const auth = { Authorization: `Bearer ${token}` };
      // Sent, then gone while the server waits for the keys.
      const gone = rawClient(
        server.url,
        `GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`,
        (socket) => setTimeout(() => socket.destroy(), 100),
      );
      await gone.closed;
      await sleep(800);
      // With the gate's one place leaked, this would be shed (503) for good.
      expect((await fetch(`${server.url}/api/v1/tasks`, { headers: auth })).status).toBe(200);
      expect(await (await fetch(`${server.url}/metrics`)).text()).toMatch(/http_requests_admitted 0\b/);
    } finally {
      await server.close();
      jwks.closeAllConnections();
      await new Promise((resolve) => jwks.close(resolve));
    }
  });
});

describe('the JSON body deadline', () => {
  let server: TestServer;
  beforeAll(async () => {
    // One place at work and none in the queue: a body that trickles in must not take it.
    server = await startServer({ capacity: { bodyTimeoutMs: 1000 }, overload: { maxInFlight: 1, maxQueue: 0 } });
  });
  afterAll(() => server.close());

  it('answers 408 body-timeout and closes the connection, holding no place of the gate meanwhile', async () => {
    const token = await server.tokenFor();
    const trickling = stalledCreate(server.url, token);
    const dripping = setInterval(() => trickling.socket.writable && trickling.socket.write(' '), 100);
    await sleep(300);
    // The gate's one place is free: the slow body holds none.
    expect((await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(
      200,
    );
    const { ms, said } = await trickling.closed;
    clearInterval(dripping);
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(3000);
    expect(statusOf(said)).toBe(408);
    expect(said).toMatch(/\r\nConnection: close\r\n/i);
    expect(said).toMatch(/\r\nContent-Type: application\/problem\+json/i);
    expect(bodyOf(said)).toMatchObject({ type: 'urn:tasks-api:problem:body-timeout', status: 408 });
    // Nothing was created.
    const { data } = await server.client(token).GET('/api/v1/tasks');
    expect(data!.items).toHaveLength(0);
  });

  it('lets a body that arrives in time through, however it is split', async () => {
    const token = await server.tokenFor();
    const body = JSON.stringify({ title: 'sent in three pieces' });
    const client = rawClient(
      server.url,
      `POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      (socket) => {
        socket.write(body.slice(0, 5));
        setTimeout(() => socket.write(body.slice(5, 12)), 200);
        setTimeout(() => socket.write(body.slice(12)), 400);
      },
    );
    expect(statusOf((await client.closed).said)).toBe(201);
  });
});

describe('transfers', () => {
  let server: TestServer;
  let token: string;
  let taskId: string;
  beforeAll(async () => {
    server = await startServer({
      capacity: {
        uploadsPerUser: 2,
        downloadsPerUser: 1,
        maxTransfers: 3,
        transferMinBytesPerSecond: 1024,
        transferRateWindowMs: 1000,
      },
      overload: { maxInFlight: 1, maxQueue: 0 },
    });
    token = await server.tokenFor();
    taskId = await newTask(server, token);
  });
  afterAll(() => server.close());

  it('do not take places of the gate, have per-user caps (429) and a pool of their own (503)', async () => {
    const uploads = [movingUpload(server.url, token, taskId), movingUpload(server.url, token, taskId)];
    await sleep(300);
    // The gate has one place, and it is free: uploads in progress hold none of it.
    expect(
      (await fetch(`${server.url}/api/v1/tasks/${taskId}`, { headers: { Authorization: `Bearer ${token}` } })).status,
    ).toBe(200);
    // A third upload of this user is over its cap.
    const third = stalledUpload(server.url, token, taskId);
    const { said } = await third.closed.then(
      (c) => c,
      () => ({ said: third.said() }),
    );
    expect(statusOf(said)).toBe(429);
    expect(bodyOf(said)).toMatchObject({
      type: 'urn:tasks-api:problem:concurrency-limited',
      detail: expect.stringContaining('uploads in progress for this user'),
    });

    // Another user takes the pool's third place; a fourth transfer (a third user's) finds it full.
    const other = await server.tokenFor();
    const othersTask = await newTask(server, other);
    const otherUpload = movingUpload(server.url, other, othersTask);
    await sleep(200);
    const shed = await fetch(`${server.url}/api/v1/tasks/${othersTask}/attachments`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await server.tokenFor()}`, 'Content-Type': 'text/plain' },
      body: 'x',
    });
    expect(shed.status).toBe(503);
    expect(await shed.json()).toMatchObject({
      type: 'urn:tasks-api:problem:overloaded',
      detail: expect.stringContaining('uploads and downloads'),
    });
    for (const u of [...uploads, otherUpload]) u.socket.destroy();
    await sleep(200);
  });

  it('ends an upload slower than the minimum rate with 408 transfer-too-slow, keeping nothing of it', async () => {
    const slow = stalledUpload(server.url, token, taskId);
    const { ms, said } = await slow.closed;
    expect(ms).toBeLessThan(4000);
    expect(statusOf(said)).toBe(408);
    expect(bodyOf(said)).toMatchObject({ type: 'urn:tasks-api:problem:transfer-too-slow', status: 408 });
    const { data } = await server
      .client(token)
      .GET('/api/v1/tasks/{taskId}/attachments', { params: { path: { taskId } } });
    expect(data!.items).toHaveLength(0);
    await sleep(200);
    const blobs = await sql<{
      n: number;
    }>`select count(*)::int as n from attachment_blobs where owner_id = ${(await server.client(token).GET('/api/v1/me')).data!.sub}`.execute(
      server.database.db,
    );
    expect(blobs.rows[0]!.n).toBe(0);
    // A multipart upload is held to the same rate.
    const boundary = 'b0undary';
    const multipart = rawClient(
      server.url,
      `POST /api/v1/tasks/${taskId}/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 5000\r\n\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello`,
    );
    expect(statusOf((await multipart.closed).said)).toBe(408);
  });

  it('destroys the connection of a download that is not read, and counts it', async () => {
    const other = await server.tokenFor();
    const task = await newTask(server, other);
    // 8 MiB of text: more than the kernel's buffers take from a reader that never reads (about 4 MB here).
    const bytes = Buffer.from(randomBytes(6 * 1024 * 1024).toString('base64'));
    const uploaded = await fetch(`${server.url}/api/v1/tasks/${task}/attachments`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${other}`, 'Content-Type': 'text/plain' },
      body: bytes,
    });
    expect(uploaded.status).toBe(201);
    const file = (await uploaded.json()) as { id: string };
    const reader = rawClient(
      server.url,
      `GET /api/v1/attachments/${file.id}/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${other}\r\n\r\n`,
      (socket) => socket.pause(),
    );
    await sleep(200);
    // Its one download place is taken, however the path is spelled (the routers take a trailing slash, the validator any case).
    for (const path of [
      `/api/v1/attachments/${file.id}/content`,
      `/api/v1/attachments/${file.id}/content/`,
      `/API/v1/attachments/${file.id}/CONTENT`,
    ]) {
      const second = await fetch(`${server.url}${path}`, { headers: { Authorization: `Bearer ${other}` } });
      expect([path, second.status]).toEqual([path, 429]);
      await second.body?.cancel();
    }
    // Ended by the server within a few windows (the paused client cannot see its own socket close).
    let metrics = '';
    for (
      let waited = 0;
      waited < 6000 && !/http_transfers_too_slow_total\{kind="download"\} 1\b/.test(metrics);
      waited += 250
    ) {
      await sleep(250);
      metrics = await (await fetch(`${server.url}/metrics`)).text();
    }
    expect(metrics).toMatch(/http_transfers_too_slow_total\{kind="download"\} 1\b/);
    expect(metrics).toMatch(/http_transfers_in_progress\{kind="download"\} 0\b/);
    reader.socket.destroy();
    // Read at any pace above the minimum, the same file comes whole.
    const whole = await fetch(`${server.url}/api/v1/attachments/${file.id}/content`, {
      headers: { Authorization: `Bearer ${other}` },
    });
    expect(Buffer.from(await whole.arrayBuffer()).equals(bytes)).toBe(true);
    // 8 MiB into the database and out of it twice, in this process: 8 s alone, 10-13 s beside the
    // suite's other workers, and once 20 s on a loaded run, which the default timeout cut short.
  }, 60_000);
});

describe('connections per address', () => {
  it('closes connections beyond MAX_CONNECTIONS_PER_IP from one address as they are accepted, and takes new ones as others close', async () => {
    const server = createHttpServer({
      headersTimeoutMs: 5000,
      requestTimeoutMs: 5000,
      keepAliveTimeoutMs: 5000,
      maxConnections: 100,
      maxConnectionsPerIp: 3,
    });
    server.on('request', (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const silent = Array.from({ length: 5 }, () => rawClient(url, ''));
      const early = await Promise.race([
        Promise.all(silent.slice(3).map((c) => c.closed)),
        sleep(1000).then(() => 'not closed'),
      ]);
      expect(early).not.toBe('not closed');
      silent[0]!.socket.destroy();
      await sleep(100);
      const served = rawClient(url, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(statusOf((await served.closed).said)).toBe(200);
      for (const c of silent) c.socket.destroy();
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('readiness', () => {
  it('shares one database check among every probe for a second, and fails probes on a check that hangs', async () => {
    let pings = 0;
    let answer: Promise<void> = Promise.resolve();
    const check = sharedCheck(() => {
      pings += 1;
      return answer;
    });
    await Promise.all(Array.from({ length: 200 }, () => check()));
    expect(pings).toBe(1);
    await check();
    expect(pings).toBe(1);
    await sleep(1100);
    answer = new Promise(() => undefined); // the database hangs
    const started = Date.now();
    const probes = await Promise.allSettled(Array.from({ length: 50 }, () => check()));
    expect(probes.every((p) => p.status === 'rejected')).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(pings).toBe(2); // one ping in flight for all of them
  });
});

describe('with Redis (127.0.0.1:6379)', () => {
  const redis = createClient({ url: 'redis://127.0.0.1:6379', disableOfflineQueue: true });
  beforeAll(async () => {
    await redis.connect();
  });
  afterAll(async () => {
    await redis.close();
  });

  it('two app instances share one concurrency cap per user, and give the place back when a request ends', async () => {
    const prefix = `tasks-api-test:${randomUUID()}:`;
    const options = { capacity: { perUser: 1, bodyTimeoutMs: 1000 }, redis, rateLimitPrefix: prefix };
    const [a, b] = [await startServer(options), await startServer(options)];
    try {
      const sub = `shared-${randomUUID()}`;
      const held = stalledCreate(a.url, await a.tokenFor(sub));
      await sleep(300);
      const other = await fetch(`${b.url}/api/v1/tasks`, {
        headers: { Authorization: `Bearer ${await b.tokenFor(sub)}` },
      });
      expect(other.status).toBe(429);
      expect(statusOf((await held.closed).said)).toBe(408);
      await sleep(100);
      expect(
        (await fetch(`${b.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${await b.tokenFor(sub)}` } }))
          .status,
      ).toBe(200);
      expect(await redis.zCard(`${prefix}cc:user:${sub}`)).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('lets requests through, and logs at error once, when Redis is unreachable (fail open)', async () => {
    const dead = createClient({
      url: 'redis://127.0.0.1:1',
      disableOfflineQueue: true,
      socket: { reconnectStrategy: false },
    });
    dead.on('error', () => undefined);
    await dead.connect().catch(() => undefined);
    const server = await startServer({ capacity: { perUser: 1 }, redis: dead, rateLimitPrefix: `x:${randomUUID()}:` });
    try {
      const token = await server.tokenFor();
      const statuses = await Promise.all(
        Array.from(
          { length: 3 },
          async () =>
            (await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } })).status,
        ),
      );
      expect(statuses).toEqual([200, 200, 200]);
      expect(
        server.logs.filter(
          (line) => line.level === 'error' && String(line.message).startsWith('concurrency store failed'),
        ),
      ).toHaveLength(1);
    } finally {
      await server.close();
    }
  });
});
