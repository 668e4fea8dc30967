import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { holdTasks } from '../helpers/hold.js';
import { startServer, type TestServer } from '../helpers/server.js';

describe('security headers', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it('every JSON response forbids loading and framing anything, and names no framework', async () => {
    for (const path of ['/health/live', '/api/v1/tasks', '/no/such/route']) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none';frame-ancestors 'none'");
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('strict-transport-security')).toMatch(/^max-age=\d+/);
      expect(res.headers.get('x-powered-by')).toBeNull();
    }
  });

  it('/docs keeps its own policy, which pins its scripts', async () => {
    const res = await fetch(`${server.url}/docs`);
    expect(res.headers.get('content-security-policy')).toMatch(/^default-src 'none'; script-src 'sha256-/);
  });

  it('without CORS_ORIGINS no origin gets a CORS header, not even on a preflight', async () => {
    const token = await server.tokenFor();
    const res = await fetch(`${server.url}/api/v1/tasks`, {
      headers: { Origin: 'https://app.example.com', Authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const preflight = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS with an allow-list', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ corsOrigins: ['https://app.example.com'] });
  });
  afterAll(() => server.close());

  it('answers a listed origin, exposes the headers clients need, never allows credentials', async () => {
    const token = await server.tokenFor();
    const res = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'POST',
      headers: {
        Origin: 'https://app.example.com',
        Authorization: `Bearer ${token}`,
        'Content-Type': 'application/json',
      },
      body: JSON.stringify({ title: 'from the browser' }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(res.headers.get('vary')).toMatch(/Origin/);
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    const exposed = res.headers.get('access-control-expose-headers')!.split(',');
    expect(exposed).toEqual(
      expect.arrayContaining(['Location', 'ETag', 'Link', 'X-Request-Id', 'RateLimit', 'RateLimit-Policy']),
    );
  });

  it('exposes every non-safelisted header the API sends, so a page can read them', async () => {
    const res = await fetch(`${server.url}/api/v1/tasks`, { headers: { Origin: 'https://app.example.com' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const exposed = res.headers.get('access-control-expose-headers')!.split(',');
    expect(exposed.sort()).toEqual(
      [
        'Accept-Ranges',
        'Allow',
        'Content-Disposition',
        'Content-Range',
        'ETag',
        'Idempotent-Replayed',
        'Link',
        'Location',
        'RateLimit',
        'RateLimit-Policy',
        'Retry-After',
        'WWW-Authenticate',
        'X-Request-Id',
      ].sort(),
    );
  });

  it.each([
    ['POST', '/api/v1/tasks', 'authorization,content-type,idempotency-key'],
    ['PATCH', '/api/v1/tasks/0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11', 'authorization,content-type,if-match'],
    ['DELETE', '/api/v1/tasks/0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11', 'authorization,if-match'],
    ['POST', '/api/v1/auth/login', 'content-type'],
    [
      'POST',
      '/api/v1/tasks/0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11/attachments',
      'authorization,content-type,content-disposition',
    ],
    [
      'GET',
      '/api/v1/attachments/0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11/content',
      'authorization,range,if-range,if-none-match',
    ],
  ])('answers the preflight of %s %s with %s', async (method, path, requested) => {
    const res = await fetch(`${server.url}${path}`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://app.example.com',
        'Access-Control-Request-Method': method,
        'Access-Control-Request-Headers': requested,
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(res.headers.get('access-control-allow-methods')!.split(',')).toContain(method);
    const allowed = res.headers.get('access-control-allow-headers')!.toLowerCase().split(',');
    expect(allowed).toEqual(expect.arrayContaining(requested.split(',')));
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    expect(res.headers.get('access-control-max-age')).toBe('600');
  });

  it('answers the preflight of a conditional PATCH from a listed origin', async () => {
    const res = await fetch(`${server.url}/api/v1/tasks/0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://app.example.com',
        'Access-Control-Request-Method': 'PATCH',
        'Access-Control-Request-Headers': 'authorization,if-match,content-type',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(res.headers.get('access-control-allow-methods')).toContain('PATCH');
    expect(res.headers.get('access-control-allow-headers')!.toLowerCase()).toEqual(expect.stringContaining('if-match'));
  });

  it('ignores an origin that is not listed', async () => {
    const res = await fetch(`${server.url}/health/live`, { headers: { Origin: 'https://evil.example.net' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS while the server sheds load', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({
      ownDatabase: true, // holdTasks locks the tasks table
      corsOrigins: ['https://app.example.com'],
      overload: { maxInFlight: 1, maxQueue: 0, maxQueueWaitMs: 1000, maxEventLoopDelayMs: 10_000, maxPoolWaiting: 100 },
    });
  });
  afterAll(() => server.close());

  it("answers preflights without queueing them, and a shed request's 503 is readable by the page", async () => {
    const token = await server.tokenFor();
    const { data: task } = await server.client(token).POST('/api/v1/tasks', { body: { title: 'held by a lock' } });
    // A read of the task, waiting for the test's lock on the tasks table, holds the one place at work.
    const hold = await holdTasks(server);
    const held = fetch(`${server.url}/api/v1/tasks/${task!.id}`, { headers: { Authorization: `Bearer ${token}` } });
    await new Promise((resolve) => setTimeout(resolve, 200));

    const preflight = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://app.example.com',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');

    const shed = await fetch(`${server.url}/api/v1/tasks`, {
      headers: { Origin: 'https://app.example.com', Authorization: `Bearer ${token}` },
    });
    expect(shed.status).toBe(503);
    expect(shed.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(shed.headers.get('retry-after')).toBe('1');
    expect(shed.headers.get('access-control-expose-headers')!.split(',')).toEqual(
      expect.arrayContaining(['Retry-After', 'X-Request-Id']),
    );

    await hold.release();
    expect((await held).status).toBe(200);
  });
});
