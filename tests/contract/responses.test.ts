// Every response is the one the contract documents: its status, its JSON body's schema, and every
// header a client may act on. Every test server watches its responses for each of these
// (tests/helpers/contract-responses.ts; a server's close() fails its test file on any), and the
// contract fuzz checks each response it gets the same way. This file drives the responses neither
// the fuzz nor most tests reach (a 429, a replayed creation, a 304, a 412, the built-in issuer's
// tokens) and checks that the watch itself finds a header left undeclared, a body off its schema,
// an undocumented status, however the app writes them.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { loadContract, type OpenApiDocument } from '../../src/http/contract.js';
import { contractHeaders } from '../helpers/contract-headers.js';
import { watchResponses, type ResponseMismatch } from '../helpers/contract-responses.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let limited: TestServer;
beforeAll(async () => {
  [server, limited] = await Promise.all([
    startServer({ builtinAuth: true }),
    startServer({ rateLimit: { perMinute: 2, authPerMinute: 1 } }),
  ]);
});
afterAll(async () => {
  await Promise.all([server?.close(), limited?.close()]);
});

const json = (token: string | undefined, body?: unknown, headers: Record<string, string> = {}) => ({
  headers: {
    ...(token ? { Authorization: `Bearer ${token}` } : {}),
    ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    ...headers,
  },
  body: body === undefined ? undefined : JSON.stringify(body),
});

describe('the contract declares the headers the server sends', () => {
  it('on creation (Location, ETag), its replay (Idempotent-Replayed), a list (Link), 304 and 412', async () => {
    const token = await server.tokenFor();
    const key = randomUUID();
    const created = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'POST',
      ...json(token, { title: 'a' }, { 'Idempotency-Key': key }),
    });
    expect([
      created.status,
      created.headers.get('location') !== null,
      created.headers.get('etag'),
      created.headers.get('x-request-id') !== null,
    ]).toEqual([201, true, '"1"', true]);
    const replayed = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'POST',
      ...json(token, { title: 'a' }, { 'Idempotency-Key': key }),
    });
    expect([replayed.status, replayed.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    await fetch(`${server.url}/api/v1/tasks`, { method: 'POST', ...json(token, { title: 'b' }) });
    const page = await fetch(`${server.url}/api/v1/tasks?limit=1`, json(token));
    expect(page.headers.get('link')).toMatch(/rel="next"$/);
    const url = `${server.url}${created.headers.get('location')}`;
    expect((await fetch(url, json(token, undefined, { 'If-None-Match': '"1"' }))).status).toBe(304);
    expect((await fetch(url, { method: 'PATCH', ...json(token, { title: 'c' }, { 'If-Match': '"7"' }) })).status).toBe(
      412,
    );
    expect(server.mismatches).toEqual([]);
  });

  it('on 401 and 403 (WWW-Authenticate) and on the built-in issuer (Cache-Control)', async () => {
    const noToken = await fetch(`${server.url}/api/v1/tasks`);
    expect([noToken.status, noToken.headers.get('www-authenticate')]).toEqual([401, 'Bearer']);
    const readOnly = await server.tokenFor(undefined, { scope: 'tasks:read' });
    const forbidden = await fetch(`${server.url}/api/v1/tasks`, { method: 'POST', ...json(readOnly, { title: 'x' }) });
    expect([forbidden.status, forbidden.headers.get('www-authenticate')]).toEqual([
      403,
      'Bearer error="insufficient_scope", scope="tasks:write"',
    ]);
    const account = { email: `${randomUUID()}@example.com`, password: 'correct horse battery staple' };
    const registered = await fetch(`${server.url}/api/v1/auth/register`, {
      method: 'POST',
      ...json(undefined, account),
    });
    expect([registered.status, registered.headers.get('cache-control')]).toEqual([201, 'no-store']);
    const wrong = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      ...json(undefined, { ...account, password: 'not the password' }),
    });
    expect([wrong.status, wrong.headers.get('www-authenticate')]).toEqual([401, 'Bearer']);
    const keys = await fetch(`${server.url}/.well-known/jwks.json`);
    expect([keys.status, keys.headers.get('cache-control')]).toEqual([200, 'public, max-age=300']);
    expect(server.mismatches).toEqual([]);
  });

  it('on 429 (Retry-After, RateLimit) from the per-user and the auth limits', async () => {
    const token = await limited.tokenFor();
    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await fetch(`${limited.url}/api/v1/tasks`, json(token))).status);
    const over = await fetch(`${limited.url}/api/v1/tasks`, json(token));
    expect([...statuses, over.status]).toEqual([200, 200, 429, 429]);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    const auth = [];
    for (let i = 0; i < 2; i += 1)
      auth.push(
        await fetch(`${limited.url}/api/v1/auth/login`, {
          method: 'POST',
          ...json(undefined, { email: 'a@example.com', password: 'whatever it is' }),
        }),
      );
    expect(auth.map((res) => res.status)).toContain(429);
    expect(limited.mismatches).toEqual([]);
  });
});

describe('the check itself', () => {
  const spec = {
    openapi: '3.1.0',
    info: { title: 't', version: '1' },
    paths: {
      '/things/{id}': {
        get: {
          responses: {
            '200': { description: 'ok', headers: { ETag: { schema: { type: 'string' } } } },
            '404': { $ref: '#/components/responses/Gone' },
          },
        },
      },
    },
    components: {
      responses: {
        Gone: { description: 'gone', headers: { 'X-Request-Id': { required: true, schema: { type: 'string' } } } },
      },
    },
  } as unknown as OpenApiDocument;
  const check = contractHeaders(spec);
  const undeclared = (method: string, path: string, status: number, names: string[]) =>
    check(method, path, status, names)?.undeclared;

  it('names a header the response does not declare, whatever its case, and ignores transport, helmet and CORS headers', () => {
    const sent = [
      'ETag',
      'x-request-id',
      'Date',
      'Content-Type',
      'Content-Length',
      'Vary',
      'Strict-Transport-Security',
      'Access-Control-Allow-Origin',
    ];
    expect(undeclared('GET', '/things/1', 200, sent)).toEqual(['x-request-id']);
    expect(undeclared('GET', '/things/1', 404, ['X-Request-Id', 'Retry-After'])).toEqual(['retry-after']);
  });

  it('names a header the response declares required but lacks, whatever its case', () => {
    expect(check('GET', '/things/1', 404, ['Date'])).toEqual({ undeclared: [], missing: ['x-request-id'] });
    expect(check('GET', '/things/1', 404, ['x-request-id'])).toEqual({ undeclared: [], missing: [] });
    expect(check('GET', '/things/1', 200, [])).toEqual({ undeclared: [], missing: [] }); // ETag is optional there
  });

  it('leaves alone what the contract has no operation or status for (other checks refuse those)', () => {
    expect(undeclared('GET', '/nothing', 200, ['X-Anything'])).toBeUndefined();
    expect(undeclared('POST', '/things/1', 200, ['X-Anything'])).toBeUndefined();
    expect(undeclared('GET', '/things/1', 500, ['X-Anything'])).toBeUndefined();
  });

  it('finds nothing undeclared in the served contract for the headers every response carries', () => {
    const served = loadContract().spec;
    expect(undeclared('GET', '/things/1', 200, ['ETag'])).toEqual([]);
    const checkServed = contractHeaders(served);
    expect(checkServed('GET', '/api/v1/tasks', 200, ['X-Request-Id', 'RateLimit', 'RateLimit-Policy', 'Link'])).toEqual(
      { undeclared: [], missing: [] },
    );
    expect(checkServed('GET', '/health/live', 200, ['X-Request-Id'])).toEqual({ undeclared: [], missing: [] });
    expect(
      checkServed('POST', '/api/v1/webhooks', 201, ['X-Request-Id', 'Location', 'RateLimit', 'RateLimit-Policy']),
    ).toEqual({ undeclared: [], missing: ['cache-control'] });
  });
});

describe('the watch on a server (a toy contract, a plain Node server)', () => {
  const spec = {
    openapi: '3.1.0',
    info: { title: 't', version: '1' },
    paths: {
      '/things/{id}': {
        get: {
          responses: {
            '200': {
              description: 'ok',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['id', 'at'],
                    additionalProperties: false,
                    properties: { id: { type: 'string' }, at: { type: 'string', format: 'date-time' } },
                  },
                },
              },
            },
            '204': { description: 'none' },
            '4XX': {
              description: 'problem',
              content: { 'application/problem+json': { schema: { type: 'object', required: ['status'] } } },
            },
          },
        },
      },
    },
  } as unknown as OpenApiDocument;
  /** What each `path` answers: status, content type and the body in the pieces it is written in. */
  const answers: Record<string, [number, string | undefined, string[]]> = {
    '/things/good': [200, 'application/json; charset=utf-8', ['{"id":"a","at":"2026-12-01T09:00:00Z"}']],
    '/things/pieces': [200, 'application/json', ['{"id":', '"a","at":"2026-12-01T09:00:00Z"}']],
    '/things/extra': [200, 'application/json', ['{"id":"a","at":"2026-12-01T09:00:00Z","x":1}']],
    '/things/late': [200, 'application/json', ['{"id":"a","at":"2026-13-01T09:00:00Z"}']],
    '/things/text': [200, 'text/plain', ['not json']],
    '/things/problem': [404, 'application/problem+json', ['{"status":404}']],
    '/things/not-a-problem': [409, 'application/json', ['{"status":409}']],
    '/things/body-on-none': [204, 'application/json', ['{}']],
    '/things/undocumented': [500, undefined, []],
    '/elsewhere': [500, 'application/json', ['{}']],
  };
  let server: Server;
  let url: string;
  let found: ResponseMismatch[];
  beforeAll(async () => {
    server = createServer((req, res) => {
      const [status, type, pieces] = answers[req.url!]!;
      res.statusCode = status;
      if (type !== undefined) res.setHeader('Content-Type', type);
      for (const piece of pieces.slice(0, -1)) res.write(piece);
      res.end(pieces.at(-1));
    });
    found = watchResponses(server, spec);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  const problems = async (path: string, method = 'GET') => {
    found.length = 0;
    await (await fetch(`${url}${path}`, { method })).arrayBuffer();
    return found.map((m) => `${m.status} ${m.body ?? ''}`);
  };

  it('passes a conforming body, whole or written in pieces, and a documented status without one', async () => {
    expect(await problems('/things/good')).toEqual([]);
    expect(await problems('/things/pieces')).toEqual([]);
    expect(await problems('/things/problem')).toEqual([]);
    expect(await problems('/things/text')).toEqual([]); // not JSON: its schema is not checked
  });

  it('names a body off its schema, its formats included', async () => {
    expect(await problems('/things/extra')).toEqual([
      expect.stringMatching(/^200 the body breaks the contract: .*additional/),
    ]);
    expect(await problems('/things/late')).toEqual([
      expect.stringMatching(/^200 the body breaks the contract: .*date-time/),
    ]);
  });

  it('names an undeclared media type, a body where none is documented, an undocumented status', async () => {
    expect(await problems('/things/not-a-problem')).toEqual([
      '409 media type application/json is not documented (application/problem+json)',
    ]);
    // What the app wrote, though Node leaves a 204's body off the wire.
    expect(await problems('/things/body-on-none')).toEqual([
      '204 a application/json body where the contract documents none',
    ]);
    expect(await problems('/things/undocumented')).toEqual(['500 status 500 is not documented for this operation']);
  });

  it('leaves alone a HEAD, another method and a path outside the contract (the router answers those)', async () => {
    expect(await problems('/things/extra', 'HEAD')).toEqual([]);
    expect(await problems('/things/undocumented', 'DELETE')).toEqual([]);
    expect(await problems('/elsewhere')).toEqual([]);
  });
});
