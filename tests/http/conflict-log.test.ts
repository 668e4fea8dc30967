import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { EmailTaken } from '../../src/auth/builtin/errors.js';
import type { HttpProblem } from '../../src/errors/problem.js';
import { errorHandler } from '../../src/http/error-handler.js';
import { requestContext } from '../../src/http/request-context.js';
import { IdempotencyKeyInUse } from '../../src/idempotency/idempotency.js';
import { WebhookDisabled, WebhookLimitReached } from '../../src/webhooks/errors.js';
import { captureLogs } from '../helpers/logs.js';
import { startServer, type TestServer } from '../helpers/server.js';

/*
 * Every 409 used to be logged as an "idempotency conflict", whatever it was. Only a duplicate of a
 * request still in flight is one (warn); any other conflict is logged as what it is (info).
 */

describe('the error handler logs each 409 as what it is', () => {
  const { logger, lines } = captureLogs('info');
  let url: string;
  let close: () => void;
  let thrown: HttpProblem;
  beforeAll(async () => {
    const app = express();
    app.use(requestContext());
    app.post('/conflict', () => {
      throw thrown;
    });
    app.use(errorHandler(logger));
    const server = createServer(app).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/conflict`;
    close = () => server.close();
  });
  afterAll(() => close());

  /** The log lines written for one request that fails with `problem`. */
  async function linesFor(problem: HttpProblem) {
    thrown = problem;
    const res = await fetch(url, { method: 'POST' });
    expect(res.status).toBe(409);
    const requestId = res.headers.get('x-request-id');
    return lines.filter((line) => line.request_id === requestId);
  }

  it('an Idempotency-Key still in flight: warn "idempotency conflict"', async () => {
    expect(await linesFor(new IdempotencyKeyInUse())).toEqual([
      expect.objectContaining({
        level: 'warn',
        message: 'idempotency conflict',
        code: 'IDEMPOTENCY_KEY_IN_USE',
        path: '/conflict',
      }),
    ]);
  });

  it.each([
    ['WEBHOOK_LIMIT_REACHED', new WebhookLimitReached(25)],
    ['WEBHOOK_DISABLED', new WebhookDisabled('6f1c2a8e-0000-4000-8000-000000000000')],
    ['EMAIL_TAKEN', new EmailTaken()],
  ])('%s: info "conflict" with its code, never "idempotency conflict"', async (code, problem) => {
    expect(await linesFor(problem)).toEqual([
      expect.objectContaining({ level: 'info', message: 'conflict', code, path: '/conflict' }),
    ]);
  });
});

describe('through the app', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it('a test event for a disabled webhook (409 webhook-disabled) is logged as a conflict', async () => {
    const api = server.client(await server.tokenFor());
    const { data: hook } = await api.POST('/api/v1/webhooks', {
      body: { url: 'https://hooks.example.com/tasks', events: ['task.created'], enabled: false },
    });
    const refused = await api.POST('/api/v1/webhooks/{webhookId}/test', {
      params: { path: { webhookId: hook!.id } },
    });
    expect(refused.response.status).toBe(409);
    const requestId = refused.response.headers.get('x-request-id');
    const logged = server.logs.filter((line) => line.request_id === requestId && line.message !== 'request');
    expect(logged).toEqual([expect.objectContaining({ level: 'info', message: 'conflict', code: 'WEBHOOK_DISABLED' })]);
  });
});
