import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHttpServer } from '../../src/http/http-server.js';
import { captureLogs } from '../helpers/logs.js';
import { startServer, type TestServer } from '../helpers/server.js';

/*
 * What Node's HTTP parser refuses never reaches the app: without a 'clientError' handler Node
 * answers a bare `400 Bad Request` (431, 408) with no body, no Content-Type and no X-Request-Id.
 * These requests are sent on raw sockets, byte for byte, and must be answered problem+json like
 * every other error, and the connection closed.
 */

/** Node's limit on the request line and headers (no maxHeaderSize is configured). */
const MAX_HEADER_SIZE = 16 * 1024;
/** CLIENT_HEADERS_TIMEOUT_MS and CLIENT_REQUEST_TIMEOUT_MS of the test server. */
const CLIENT_TIMEOUT_MS = 2000;

interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: Record<string, unknown>;
  /** The server ended the connection (its FIN reached us) before we closed our side. */
  endedByServer: boolean;
  ms: number;
}

/** Sends `bytes` (latin1, so control characters go out as they are) on a new connection; what came back once it closed. */
function exchange(url: string, bytes: string, waitMs = 5000): Promise<Answer> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    let endedByServer = false;
    const socket = connect(Number(port), '127.0.0.1', () => {
      if (bytes !== '') socket.write(Buffer.from(bytes, 'latin1'));
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close the connection within ${waitMs} ms`));
    }, waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => (endedByServer = true));
    socket.on('error', () => undefined); // a reset after the answer is read is not what is tested
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('utf8');
      const split = raw.indexOf('\r\n\r\n');
      const [statusLine = '', ...lines] = raw.slice(0, split).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const text = raw.slice(split + 4);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        // left empty: the expectations below say what was wrong
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]),
        headers,
        text,
        body,
        endedByServer,
        ms: Date.now() - started,
      });
    });
  });
}

/** Every answer to a refused request: problem+json with a request id, the app's security headers, connection closed. */
function expectProblem(answer: Answer, problem: { status: number; type: string; title: string; instance: string }) {
  expect(answer.status).toBe(problem.status);
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json(;|$)/);
  expect(answer.headers['connection']).toBe('close');
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.headers['x-content-type-options']).toBe('nosniff');
  expect(answer.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.text));
  expect(answer.body).toEqual({
    type: problem.type,
    title: problem.title,
    status: problem.status,
    detail: expect.any(String),
    instance: problem.instance,
    request_id: answer.headers['x-request-id'],
  });
  expect(answer.endedByServer).toBe(true);
}

const MALFORMED = {
  status: 400,
  type: 'urn:tasks-api:problem:malformed-request',
  title: 'Malformed request',
} as const;

let api: TestServer;
beforeAll(async () => {
  // clientRequestTimeoutMs: the app on createHttpServer, as main.ts serves it.
  api = await startServer({ clientRequestTimeoutMs: CLIENT_TIMEOUT_MS });
});
afterAll(() => api.close());

describe('requests the HTTP parser refuses', () => {
  it('a control character in a header value: 400 malformed-request with the request path, the value never echoed', async () => {
    const token = await api.tokenFor();
    const answer = await exchange(
      api.url,
      `GET /api/v1/tasks?limit=5 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Test: se\x1bcret\r\n\r\n`,
    );
    expectProblem(answer, { ...MALFORMED, instance: '/api/v1/tasks' });
    expect(answer.body.detail).toBe('A header value contains a control character.');
    expect(answer.text).not.toMatch(/se.?cret|Bearer/);
    expect(answer.text).not.toContain('\x1b');
  });

  it('a control character in If-Match on a conditional update: 400 malformed-request', async () => {
    const path = `/api/v1/tasks/${randomUUID()}`;
    const body = '{"title":"x"}';
    const answer = await exchange(
      api.url,
      `PATCH ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/merge-patch+json\r\nContent-Length: ${body.length}\r\nIf-Match: "abc\x1b"\r\n\r\n${body}`,
    );
    expectProblem(answer, { ...MALFORMED, instance: path });
    expect(answer.body.detail).toBe('A header value contains a control character.');
  });

  it(`headers over Node's ${MAX_HEADER_SIZE} bytes: 431 headers-too-large naming the limit`, async () => {
    const answer = await exchange(
      api.url,
      `GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(MAX_HEADER_SIZE + 1000)}\r\n\r\n`,
    );
    expectProblem(answer, {
      status: 431,
      type: 'urn:tasks-api:problem:headers-too-large',
      title: 'Request header fields too large',
      instance: '/api/v1/tasks',
    });
    expect(answer.body.detail).toContain(String(MAX_HEADER_SIZE));
  });

  it('a malformed request line: 400 malformed-request, instance /', async () => {
    for (const line of ['GET\r\n\r\n', 'G@T /api/v1/tasks HTTP/1.1\r\nHost: x\r\n\r\n', 'HELLO WORLD\r\n\r\n']) {
      const answer = await exchange(api.url, line);
      expectProblem(answer, { ...MALFORMED, instance: '/' });
      expect(answer.body.detail).toBe('The request line is malformed.');
    }
  });

  it('a control character in the request target: 400 malformed-request, the target never echoed', async () => {
    const answer = await exchange(api.url, 'GET /api/v1/ta\x01sks HTTP/1.1\r\nHost: x\r\n\r\n');
    expectProblem(answer, { ...MALFORMED, instance: '/' });
    expect(answer.body.detail).toBe('The request target contains a character that is not allowed.');
  });

  it('an invalid Content-Length: 400 malformed-request', async () => {
    for (const value of ['abc', '-1', '99999999999999999999999']) {
      const answer = await exchange(
        api.url,
        `POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${value}\r\n\r\n{}`,
      );
      expectProblem(answer, { ...MALFORMED, instance: '/api/v1/tasks' });
      expect(answer.body.detail).toBe('Content-Length is not valid.');
    }
  });

  it('Content-Length twice with different values: 400 malformed-request', async () => {
    const answer = await exchange(
      api.url,
      'POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    );
    expectProblem(answer, { ...MALFORMED, instance: '/api/v1/tasks' });
    expect(answer.body.detail).toBe('Content-Length is sent more than once.');
  });

  it('Content-Length and Transfer-Encoding together (either order, request smuggling): 400 malformed-request', async () => {
    for (const framing of [
      'Content-Length: 5\r\nTransfer-Encoding: chunked',
      'Transfer-Encoding: chunked\r\nContent-Length: 50',
    ]) {
      const answer = await exchange(
        api.url,
        `POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${framing}\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
      );
      expectProblem(answer, { ...MALFORMED, instance: '/api/v1/tasks' });
      expect(answer.body.detail).toBe('Content-Length and Transfer-Encoding must not both be sent.');
    }
  });

  it('an HTTP/1.1 request without Host: 400 malformed-request from the app, with its request id, connection closed', async () => {
    const answer = await exchange(api.url, 'GET /api/v1/tasks HTTP/1.1\r\nX-Request-Id: no-host-1\r\n\r\n');
    expect(answer.status).toBe(400);
    expect(answer.headers['content-type']).toMatch(/^application\/problem\+json(;|$)/);
    expect(answer.headers['connection']).toBe('close');
    expect(answer.headers['x-request-id']).toBe('no-host-1');
    expect(answer.body).toMatchObject({
      type: MALFORMED.type,
      status: 400,
      instance: '/api/v1/tasks',
      request_id: 'no-host-1',
      detail: expect.stringContaining('Host header'),
    });
    // HTTP/1.0 had no Host: such a request is served (here refused only for its missing token).
    const old = await exchange(api.url, 'GET /api/v1/tasks HTTP/1.0\r\n\r\n');
    expect(old.status).toBe(401);
  });

  it('carries the security headers the app sends on its own answers', async () => {
    const app = await fetch(`${api.url}/no/such/route`);
    const answer = await exchange(api.url, 'GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nX-Test: a\x1bb\r\n\r\n');
    // Everything the app's helmet sets: every header of a 404 but those that belong to one answer.
    const perAnswer = new Set([
      'content-type',
      'content-length',
      'date',
      'connection',
      'keep-alive',
      'x-request-id',
      'etag',
      'vary',
    ]);
    const security = [...app.headers.entries()].filter(
      ([name]) => !perAnswer.has(name) && !name.startsWith('ratelimit'),
    );
    expect(security.length).toBeGreaterThanOrEqual(10);
    for (const [name, value] of security) expect([name, answer.headers[name]]).toEqual([name, value]);
  });

  it('serves the next connection as usual', async () => {
    const res = await fetch(`${api.url}/health/live`);
    expect(res.status).toBe(200);
  });
});

describe('requests not received in time', () => {
  it(`a silent connection, and headers that never end: 408 request-timeout within about ${CLIENT_TIMEOUT_MS} ms`, async () => {
    const [silent, partial] = await Promise.all([
      exchange(api.url, ''),
      exchange(api.url, 'GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\n'),
    ]);
    for (const answer of [silent, partial]) {
      expectProblem(answer, {
        status: 408,
        type: 'urn:tasks-api:problem:request-timeout',
        title: 'Request timeout',
        instance: '/', // the timeout comes with no bytes of the request
      });
      expect(answer.body.detail).toContain(`${CLIENT_TIMEOUT_MS} ms`);
      expect(answer.ms).toBeGreaterThanOrEqual(CLIENT_TIMEOUT_MS - 100);
      expect(answer.ms).toBeLessThan(CLIENT_TIMEOUT_MS + 2000);
    }
  });
});

describe('logging', () => {
  let server: Server;
  let url: string;
  const { logger, lines, raw } = captureLogs('info');
  beforeAll(async () => {
    // The same app on a server of its own, given the logger as main.ts gives it.
    server = createHttpServer(
      {
        headersTimeoutMs: 5000,
        requestTimeoutMs: 5000,
        keepAliveTimeoutMs: 5000,
        maxConnections: 100,
        maxConnectionsPerIp: 0,
      },
      logger,
    ).on('request', api.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('logs one warn line per refusal with its code, status, request id and peer address, never the bytes sent', async () => {
    const answer = await exchange(url, 'GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nX-Secret: hunter2\x1b\r\n\r\n');
    expect(answer.status).toBe(400);
    const refusals = lines.filter((line) => line.message === 'request refused by the HTTP server');
    expect(refusals).toEqual([
      expect.objectContaining({
        level: 'warn',
        code: 'HPE_INVALID_HEADER_TOKEN',
        status: 400,
        request_id: answer.headers['x-request-id'],
        remote_address: '127.0.0.1',
      }),
    ]);
    expect(raw.join('\n')).not.toMatch(/hunter2|X-Secret/);
  });
});
