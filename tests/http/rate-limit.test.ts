import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { startServer, type TestServer } from '../helpers/server.js';

const servers: TestServer[] = [];
async function serverWith(options: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const server = await startServer(options);
  servers.push(server);
  return server;
}
afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

const get = (server: TestServer, path: string, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { headers });

describe('per-user and per-IP limits (in memory)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await serverWith({ rateLimit: { perMinute: 3, authPerMinute: 2 } });
  });

  it('counts each verified user on their own, announces the budget, and answers 429 problem+json past it', async () => {
    const [alice, bob] = [await server.tokenFor(), await server.tokenFor()];
    const answers = [];
    for (let i = 0; i < 4; i += 1)
      answers.push(await get(server, '/api/v1/tasks', { Authorization: `Bearer ${alice}` }));
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 429]);
    expect(answers[0]!.headers.get('ratelimit-policy')).toMatch(/^"per-user"; q=3; w=60(;|$)/);
    expect(answers[0]!.headers.get('ratelimit')).toMatch(/^"per-user"; r=2; t=\d+$/);
    const limited = answers[3]!;
    expect(limited.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited.json()).toMatchObject({ type: 'urn:tasks-api:problem:rate-limited', status: 429 });
    expect(server.logs.some((line) => line.message === 'rate limited' && line.level === 'warn')).toBe(true);
    // Bob has a budget of his own.
    expect((await get(server, '/api/v1/tasks', { Authorization: `Bearer ${bob}` })).status).toBe(200);
  });

  it('counts requests without a verified user by IP, ignoring X-Forwarded-For unless a proxy is trusted; probes are never limited', async () => {
    const statuses = [];
    for (let i = 0; i < 4; i += 1)
      statuses.push((await get(server, '/openapi.json', { 'X-Forwarded-For': `203.0.113.${i}` })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    for (let i = 0; i < 5; i += 1) expect((await get(server, '/health/live')).status).toBe(200);
  });

  it("spends the auth budget on the issuer's endpoints however the path is spelled, and routes only the contract's spelling", async () => {
    const strict = await serverWith({ rateLimit: { perMinute: 100, authPerMinute: 2 }, builtinAuth: true });
    const login = (path: string) =>
      fetch(`${strict.url}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: 'nobody@example.com', password: 'not the password' }),
      });
    const answers = [
      await login('/API/V1/AUTH/LOGIN'),
      await login('/Api/v1/Auth/Login'),
      await login('/api/v1/auth/login'),
    ];
    expect(answers.map((res) => res.status)).toEqual([404, 404, 429]);
    expect(await answers[0]!.json()).toMatchObject({
      type: 'urn:tasks-api:problem:not-found',
      status: 404,
      detail: 'No route POST /API/V1/AUTH/LOGIN.',
    });
  });

  it('believes X-Forwarded-For from a trusted proxy', async () => {
    const behindProxy = await serverWith({ rateLimit: { perMinute: 2, authPerMinute: 2 }, trustProxy: 'loopback' });
    const statuses = [];
    for (let i = 0; i < 4; i += 1)
      statuses.push((await get(behindProxy, '/openapi.json', { 'X-Forwarded-For': `203.0.113.${i}` })).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
    expect((await get(behindProxy, '/openapi.json', { 'X-Forwarded-For': '203.0.113.0' })).status).toBe(200);
    expect((await get(behindProxy, '/openapi.json', { 'X-Forwarded-For': '203.0.113.0' })).status).toBe(429);
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

  it('two app instances share one budget per user', async () => {
    const prefix = `tasks-api-test:${randomUUID()}:`;
    const [a, b] = [
      await serverWith({ rateLimit: { perMinute: 4, authPerMinute: 2 }, redis, rateLimitPrefix: prefix }),
      await serverWith({ rateLimit: { perMinute: 4, authPerMinute: 2 }, redis, rateLimitPrefix: prefix }),
    ];
    const sub = `shared-${randomUUID()}`;
    // Both servers accept this user's tokens (each signs with its own secret).
    const tokens = [await a.tokenFor(sub), await b.tokenFor(sub)];
    const statuses = [];
    for (let i = 0; i < 6; i += 1)
      statuses.push((await get([a, b][i % 2]!, '/api/v1/tasks', { Authorization: `Bearer ${tokens[i % 2]}` })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  }, 40_000); // two servers and a minute-long window shared through Redis

  it('keeps serving, and logs at error, when Redis is unreachable (fail open)', async () => {
    const dead = createClient({
      url: 'redis://127.0.0.1:1',
      disableOfflineQueue: true,
      socket: { reconnectStrategy: false },
    });
    dead.on('error', () => undefined);
    await dead.connect().catch(() => undefined);
    const server = await serverWith({
      rateLimit: { perMinute: 1, authPerMinute: 1 },
      redis: dead,
      rateLimitPrefix: `x:${randomUUID()}:`,
    });
    const token = await server.tokenFor();
    const statuses = [];
    for (let i = 0; i < 3; i += 1)
      statuses.push((await get(server, '/api/v1/tasks', { Authorization: `Bearer ${token}` })).status);
    expect(statuses).toEqual([200, 200, 200]);
    expect(
      server.logs.some(
        (line) => line.level === 'error' && line.message === 'rate limit store failed; letting requests through',
      ),
    ).toBe(true);
  });

  it('enforces the limits once Redis is reachable, when it was not as the server started', async () => {
    // Not connected yet: the store's scripts cannot be loaded as the limiter starts.
    const late = createClient({ url: 'redis://127.0.0.1:6379', disableOfflineQueue: true });
    const server = await serverWith({
      rateLimit: { perMinute: 2, authPerMinute: 100 },
      redis: late,
      rateLimitPrefix: `test:${randomUUID()}:`,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await late.connect();
    try {
      const token = await server.tokenFor();
      const statuses = [];
      for (let i = 0; i < 3; i += 1)
        statuses.push((await get(server, '/api/v1/tasks', { Authorization: `Bearer ${token}` })).status);
      expect(statuses).toEqual([200, 200, 429]);
    } finally {
      await late.close();
    }
  });
});
