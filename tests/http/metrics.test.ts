import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startServer, type TestServer } from '../helpers/server.js';

describe('GET /metrics', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it('exposes request durations by method, route template and status, in-flight requests and process metrics', async () => {
    const api = server.client(await server.tokenFor());
    const { data } = await api.POST('/api/v1/tasks', { body: { title: 'measured' } });
    await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: data!.id } } });
    await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: '0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11' } } });
    await fetch(`${server.url}/nothing/here/${'x'.repeat(10)}`);

    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toMatch(
      /^http_request_duration_seconds_count\{method="POST",route="\/api\/v1\/tasks",status="201"\} 1$/m,
    );
    // The route template, never the id: one series for every task.
    expect(text).toMatch(
      /^http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/tasks\/\{taskId\}",status="200"\} 1$/m,
    );
    expect(text).toMatch(
      /^http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/tasks\/\{taskId\}",status="404"\} 1$/m,
    );
    expect(text).toMatch(/^http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} 1$/m);
    expect(text).not.toContain(data!.id);
    expect(text).toMatch(/^http_requests_in_flight 1$/m); // this very request
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    if (server.database.kind === 'postgres') expect(text).toMatch(/^db_pool_connections\{state="total"\} \d+$/m);
    else expect(text).not.toMatch(/^db_pool_connections\{/m);
  });
});

describe('GET /metrics with METRICS_TOKEN', () => {
  let server: TestServer;
  const metricsToken = 'scrape-me-please-0123456789';
  beforeAll(async () => {
    server = await startServer({ metricsToken });
  });
  afterAll(() => server.close());

  it.each([
    ['no token', undefined, 401, 'Bearer'],
    ['a wrong token', 'Bearer not-the-metrics-token', 401, 'Bearer error="invalid_token"'],
    ['a user JWT', 'user-jwt', 401, 'Bearer error="invalid_token"'],
  ])('refuses %s with 401 problem+json', async (_, authorization, status, challenge) => {
    const header = authorization === 'user-jwt' ? `Bearer ${await server.tokenFor()}` : authorization;
    const res = await fetch(`${server.url}/metrics`, { headers: header ? { Authorization: header } : {} });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.headers.get('www-authenticate')!.startsWith(challenge)).toBe(true);
  });

  it('answers the scraper that has it', async () => {
    const res = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${metricsToken}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('http_requests_in_flight');
  });
});

describe('GET /metrics in production without METRICS_TOKEN', () => {
  it('is not served: 404 problem+json, as for a path the API lacks', async () => {
    const server = await startServer({ metricsOff: true });
    try {
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({
        type: 'urn:tasks-api:problem:not-found',
        detail: 'No route GET /metrics.',
      });
    } finally {
      await server.close();
    }
  });
});
