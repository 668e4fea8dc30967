import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';
import { entry, migratedPgliteDir, startMain } from '../helpers/process.js';
import { scratchDatabase } from '../helpers/server.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/**
 * Traces end to end, with the real entry point started as `npm start` starts it (the preload
 * first), a loopback OTLP/HTTP receiver as the collector and a loopback webhook receiver: a create
 * that triggers a webhook is one trace from the request through its statements to every delivery
 * attempt (a retry included) and the receiver's `traceparent`; nothing names a path as sent, a
 * parameter value or what the user wrote; log lines carry the ids. Nothing leaves the machine.
 */
const SERVER = 2;
const CLIENT = 3;
const onPostgres = process.env.TEST_DATABASE_URL !== undefined;

let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
let hooks: Receiver;
beforeAll(async () => {
  [otlp, hooks] = await Promise.all([startOtlpReceiver(), startReceiver()]);
});
afterAll(async () => {
  await Promise.all([otlp.close(), hooks.close()]);
});

/** A server with tracing on, exporting to the receiver, on a database of its own; stopped with SIGTERM by `stop`. */
async function tracedServer(env: Record<string, string> = {}) {
  const secret = randomBytes(32).toString('base64url');
  const dataDir = migratedPgliteDir('tasks-tracing-');
  const scratch = await scratchDatabase();
  const environment = {
    NODE_ENV: 'development',
    AUTH_BUILTIN: 'false',
    JWT_SECRET: secret,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_SERVICE_NAME: 'tasks-api-under-test',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    WEBHOOK_RETRY_SCHEDULE: '1',
    WEBHOOK_POLL_MS: '100',
    ...(scratch.url ? { DATABASE_URL: scratch.url } : { PGLITE_DIR: dataDir }),
    ...env,
  };
  const server = await startMain(environment, { preload: true });
  return {
    ...server,
    environment,
    token: (sub: string) => hs256Token(secret, sub, '10m'),
    async stop() {
      server.child.kill('SIGTERM');
      await server.exited;
      await scratch.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A new user of `server` subscribed to task.created on the receiver under a key of its own: its token, its request headers, the key. */
async function subscriber(server: { url: string; token(sub: string): Promise<string> }) {
  const token = await server.token(`tracing-${randomUUID()}`);
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const key = randomUUID();
  const hook = await fetch(`${server.url}/api/v1/webhooks`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ url: `${hooks.url}/${key}`, events: ['task.created'] }),
  });
  expect(hook.status).toBe(201);
  return { token, headers, key };
}

const childrenOf = (spans: ReceivedSpan[], parent: ReceivedSpan) =>
  spans.filter((s) => s.parentSpanId === parent.spanId);
const one = (spans: ReceivedSpan[], predicate: (s: ReceivedSpan) => boolean) => {
  const found = spans.filter(predicate);
  expect(found).toHaveLength(1);
  return found[0]!;
};

describe('tracing (OpenTelemetry, OTLP/HTTP JSON to a loopback collector)', () => {
  it('shows a create that triggers a webhook as one trace: request, stages, statements, every delivery attempt', async () => {
    const server = await tracedServer();
    try {
      const { token, headers, key } = await subscriber(server);
      hooks.failNext(key, 1, 500); // the first attempt fails, the retry succeeds

      // A client's traceparent is not continued by default (TRACING_INCOMING_CONTEXT=ignore).
      const clientTrace = randomBytes(16).toString('hex');
      const title = `secret-title-${randomUUID()}`;
      const created = await fetch(`${server.url}/api/v1/tasks`, {
        method: 'POST',
        headers: {
          ...headers,
          'Idempotency-Key': randomUUID(),
          traceparent: `00-${clientTrace}-${randomBytes(8).toString('hex')}-01`,
        },
        body: JSON.stringify({ title, description: 'private words' }),
      });
      expect(created.status).toBe(201);
      const requestId = created.headers.get('x-request-id');
      const task = (await created.json()) as { id: string };
      expect((await fetch(`${server.url}/api/v1/tasks/${task.id}`, { headers })).status).toBe(200);
      expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);

      await hooks.waitFor((d) => d.some((x) => x.key === key && x.answered === 200), 30_000);
      const attemptsDone = (spans: ReceivedSpan[]) =>
        spans.filter((s) => s.name === 'webhook delivery attempt').length >= 2 &&
        spans.filter((s) => s.kind === CLIENT && s.scope.includes('http')).length >= 2 &&
        spans.some((s) => s.name === 'GET /api/v1/tasks/{taskId}');
      await otlp.waitFor(attemptsDone);
      const spans = [...otlp.spans];

      // The request: a server span named by the route template, with what its stages decided.
      const request = one(spans, (s) => s.kind === SERVER && s.name === 'POST /api/v1/tasks');
      expect(request.traceId).not.toBe(clientTrace);
      expect(request.parentSpanId).toBeUndefined();
      expect(request.service).toBe('tasks-api-under-test');
      expect(request.attributes).toMatchObject({
        'http.route': '/api/v1/tasks',
        'http.response.status_code': 201,
        'tasks_api.request_id': requestId,
        'tasks_api.rate_limit.limit': expect.any(Number),
        'tasks_api.rate_limit.remaining': expect.any(Number),
        'tasks_api.idempotency.key': true,
        'tasks_api.idempotency.replayed': false,
      });
      const trace = spans.filter((s) => s.traceId === request.traceId);
      const stages = childrenOf(trace, request).map((s) => s.name);
      expect(stages).toEqual(
        expect.arrayContaining(['stage rate-limit', 'stage capacity', 'stage validator', 'stage operations']),
      );
      const rateLimit = one(trace, (s) => s.name === 'stage rate-limit');
      expect(childrenOf(trace, rateLimit).map((s) => s.name)).toContain('auth verify token');
      expect(one(trace, (s) => s.name === 'stage capacity').attributes['tasks_api.admission']).toBe('immediate');
      const operation = one(trace, (s) => s.name === 'stage operations');
      if (onPostgres) {
        // Each statement, named by its verb and table, its SQL with placeholders only.
        const insert = one(trace, (s) => s.name === 'INSERT tasks');
        expect(insert.parentSpanId).toBe(operation.spanId);
        expect(insert.attributes['db.system.name']).toBe('postgresql');
        expect(insert.attributes['db.query.text']).toMatch(/^insert into "tasks"/);
      }

      // Across the queue: each attempt continues the trace from the change's transaction and links to it.
      const attempts = trace
        .filter((s) => s.name === 'webhook delivery attempt')
        .sort(
          (a, b) =>
            Number(a.attributes['tasks_api.webhook.attempt']) - Number(b.attributes['tasks_api.webhook.attempt']),
        );
      expect(
        attempts.map((a) => [a.attributes['tasks_api.webhook.attempt'], a.attributes['tasks_api.webhook.outcome']]),
      ).toEqual([
        [1, 'retrying'],
        [2, 'succeeded'],
      ]);
      for (const attempt of attempts) {
        expect(attempt.parentSpanId).toBe(operation.spanId);
        expect(attempt.links).toEqual([{ traceId: request.traceId, spanId: operation.spanId }]);
        expect(attempt.attributes['tasks_api.webhook.event_type']).toBe('task.created');
      }
      expect(attempts[0]!.status.code).toBe(2); // ERROR: the receiver answered 500
      // The outgoing request of each attempt is its child, and the receiver got its traceparent.
      const received = hooks.deliveries.filter((d) => d.key === key);
      expect(received.map((d) => d.answered)).toEqual([500, 200]);
      attempts.forEach((attempt, i) => {
        const post = one(childrenOf(trace, attempt), (s) => s.kind === CLIENT && s.name === 'POST');
        expect(post.attributes['http.response.status_code']).toBe(i === 0 ? 500 : 200);
        expect(received[i]!.headers.traceparent).toBe(`00-${request.traceId}-${post.spanId}-01`);
      });

      // Route templates, never raw paths; no probe traced; nothing the user wrote, in any span.
      expect(spans.some((s) => s.kind === SERVER && s.name === 'GET /api/v1/tasks/{taskId}')).toBe(true);
      const everything = JSON.stringify(spans.map((s) => [s.name, s.attributes]));
      expect(spans.filter((s) => s.name.includes(task.id))).toEqual([]);
      expect(everything).not.toContain(title);
      expect(everything).not.toContain('private words');
      expect(everything).not.toContain(token);
      expect(spans.filter((s) => s.attributes['url.path'] === '/health/ready')).toEqual([]);
      // No background trace of the job queue's polling.
      expect(spans.filter((s) => s.scope === 'pg-boss')).toEqual([]);

      // Its duration on /metrics (OpenMetrics with tracing on) carries its trace as an exemplar.
      const metrics = await fetch(`${server.url}/metrics`);
      expect(metrics.headers.get('content-type')).toMatch(/^application\/openmetrics-text/);
      const exemplar = new RegExp(
        `^http_request_duration_seconds_bucket\\{[^}]*route="/api/v1/tasks",status="201"[^}]*\\} \\d+ # \\{[^}]*trace_id="${request.traceId}"`,
        'm',
      );
      expect(await metrics.text()).toMatch(exemplar);

      // The request's log line names its trace and its server span.
      const line = server
        .stdout()
        .split('\n')
        .filter((l) => l.includes('"message":"request"') && l.includes(requestId!))
        .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
      expect(line).toMatchObject({ trace_id: request.traceId, span_id: request.spanId });
    } finally {
      await server.stop();
    }
  }, 60_000); // a server process on PGlite, started within the test: over 20 s on a loaded machine

  it("continues a client's trace with TRACING_INCOMING_CONTEXT=continue", async () => {
    const server = await tracedServer({ TRACING_INCOMING_CONTEXT: 'continue', WEBHOOK_WORKER: 'off' });
    try {
      const token = await server.token(`tracing-${randomUUID()}`);
      const [traceId, parent] = [randomBytes(16).toString('hex'), randomBytes(8).toString('hex')];
      const listed = await fetch(`${server.url}/api/v1/tasks`, {
        headers: { Authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${parent}-01` },
      });
      expect(listed.status).toBe(200);
      await otlp.waitFor((spans) => spans.some((s) => s.traceId === traceId && s.kind === SERVER));
      const request = one(otlp.spans, (s) => s.traceId === traceId && s.kind === SERVER);
      expect(request.name).toBe('GET /api/v1/tasks');
      expect(request.parentSpanId).toBe(parent);
    } finally {
      await server.stop();
    }
  }, 60_000);

  (onPostgres ? it : it.skip)(
    'continues the trace in a separate worker process (npm run worker), through the outbox',
    async () => {
      const server = await tracedServer({ WEBHOOK_WORKER: 'off' });
      const worker = spawn(process.execPath, entry('src/worker.ts', ['src/telemetry/preload.ts']), {
        env: {
          ...process.env,
          NODE_OPTIONS: '',
          ...server.environment,
          OTEL_SERVICE_NAME: 'tasks-worker-under-test',
        },
        stdio: 'ignore',
      });
      const exited = new Promise((resolve) => worker.on('exit', resolve));
      try {
        const { headers, key } = await subscriber(server);
        const created = await fetch(`${server.url}/api/v1/tasks`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ title: 'across processes' }),
        });
        expect(created.status).toBe(201);
        const requestId = created.headers.get('x-request-id');
        await otlp.waitFor((spans) =>
          spans.some((s) => s.name === 'webhook delivery attempt' && s.service === 'tasks-worker-under-test'),
        );
        const request = one(otlp.spans, (s) => s.kind === SERVER && s.attributes['tasks_api.request_id'] === requestId);
        expect(request.service).toBe('tasks-api-under-test');
        const attempt = one(otlp.spans, (s) => s.name === 'webhook delivery attempt' && s.traceId === request.traceId);
        expect(attempt.service).toBe('tasks-worker-under-test');
        const operation = one(otlp.spans, (s) => s.spanId === attempt.parentSpanId);
        expect(operation).toMatchObject({
          name: 'stage operations',
          traceId: request.traceId,
          parentSpanId: request.spanId,
        });
        const received = hooks.deliveries.find((d) => d.key === key);
        expect(received?.headers.traceparent).toMatch(new RegExp(`^00-${request.traceId}-[0-9a-f]{16}-01$`));
      } finally {
        worker.kill('SIGTERM');
        await exited;
        await server.stop();
      }
    },
  );
});
