import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import express from 'express';
import { errorHandler } from '../../src/http/error-handler.js';
import { requestContext } from '../../src/http/request-context.js';
import { captureLogs } from '../helpers/logs.js';
import { testDatabase } from '../helpers/server.js';

describe('errorHandler', () => {
  it('answers an unexpected error with a generic 500 that carries only the request id, and logs the stack under it', async () => {
    const { logger, lines } = captureLogs('info');
    const app = express();
    app.use(requestContext());
    app.get('/boom', () => {
      throw new Error('relation "secret_table" does not exist: SELECT password FROM secret_table');
    });
    app.use(errorHandler(logger));
    const server = createServer(app).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/boom`);
      const requestId = res.headers.get('x-request-id')!;
      expect(res.status).toBe(500);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({
        type: 'urn:tasks-api:problem:internal-error',
        title: 'Internal server error',
        status: 500,
        detail: 'An unexpected error occurred. Quote the request id when reporting it.',
        instance: '/boom',
        request_id: requestId,
      });
      expect(text).not.toMatch(/secret_table|SELECT|at .*\.ts/);
      const logged = lines.find((line) => line.level === 'error')!;
      expect(logged).toMatchObject({ message: 'unhandled error', request_id: requestId });
      expect(String(logged.stack)).toContain('secret_table');
    } finally {
      server.close();
    }
  });

  it('answers a value PostgreSQL refuses (class 22, data exception) with 422, never 500, and logs it as a gap in the contract', async () => {
    // A real refusal from the database the tests run on: U+0000 cannot be stored in text.
    const database = await testDatabase();
    const refusal = await sql`select ${'a\u0000b'}::text as t`.execute(database.db).then(
      () => undefined,
      (error: unknown) => error,
    );
    await database.close();
    expect((refusal as { code?: string }).code).toMatch(/^22/);

    const { logger, lines } = captureLogs('info');
    const app = express();
    app.use(requestContext());
    app.post('/store', () => {
      throw refusal;
    });
    app.use(errorHandler(logger));
    const server = createServer(app).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/store`, { method: 'POST' });
      expect(res.status).toBe(422);
      expect(await res.json()).toMatchObject({
        type: 'urn:tasks-api:problem:validation-failed',
        errors: [{ in: 'body', pointer: '' }],
        errors_total: 1,
      });
      expect(lines.find((line) => line.level === 'warn')).toMatchObject({
        message: 'database refused a value the contract let through',
        sqlstate: (refusal as { code: string }).code,
      });
    } finally {
      server.close();
    }
  });
});
