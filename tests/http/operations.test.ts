import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { loadContract, operationIdsOf } from '../../src/http/contract.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

describe('operational endpoints (no token needed)', () => {
  it('GET /health/live answers 200', async () => {
    const { data, response } = await server.client().GET('/health/live');
    expect(response.status).toBe(200);
    expect(data).toEqual({ status: 'ok' });
  });

  it('GET /health/ready checks the database', async () => {
    const { data, response } = await server.client().GET('/health/ready');
    expect(response.status).toBe(200);
    expect(data).toEqual({ status: 'ok', checks: { database: 'ok' } });
  });

  it('GET /openapi.json serves the bundled contract', async () => {
    const res = await fetch(`${server.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(JSON.parse(readFileSync('generated/openapi.json', 'utf8')));
  });

  it('GET /openapi.yaml serves the same bundled contract as YAML', async () => {
    const { data, response } = await server.client().GET('/openapi.yaml', { parseAs: 'text' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/yaml; charset=utf-8');
    expect(data).toBe(readFileSync('generated/openapi.yaml', 'utf8'));
    for (const operationId of operationIdsOf(loadContract().spec))
      expect(data).toContain(`operationId: ${operationId}`);
  });

  it('GET /docs serves the self-contained Redoc page', async () => {
    const res = await fetch(`${server.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(html).toContain('<title>Tasks API</title>');
    expect(html).not.toMatch(/<script[^>]+src="https?:/);
    expect(html).not.toMatch(/<link[^>]+href="https?:\/\/fonts/);
    // Only the page's own inline scripts may run, and nothing may be fetched from elsewhere.
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]+=*'( 'sha256-[A-Za-z0-9+/]+=*')*;/);
    expect(csp).not.toMatch(/unsafe-eval|https?:|\*/);
  });

  it('GET /docs is sent compressed to a client that accepts it (brotli, else gzip), whole otherwise, with Vary', async () => {
    const docsHtml = readFileSync(loadContract().docsPath, 'utf8');
    /** A raw GET (fetch would decompress and hide the encoding): status, headers and the bytes as sent. */
    const get = (acceptEncoding?: string) =>
      new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>(
        (resolve, reject) => {
          const req = request(
            `${server.url}/docs`,
            { headers: acceptEncoding === undefined ? {} : { 'Accept-Encoding': acceptEncoding } },
            (res) => {
              const chunks: Buffer[] = [];
              res.on('data', (chunk: Buffer) => chunks.push(chunk));
              res.on('end', () =>
                resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
              );
            },
          );
          req.on('error', reject).end();
        },
      );
    const br = await get('gzip, deflate, br');
    expect(br.status).toBe(200);
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.vary).toMatch(/Accept-Encoding/i);
    expect(Number(br.headers['content-length'])).toBe(br.body.length);
    expect(br.body.length).toBeLessThan(docsHtml.length / 3);
    expect(brotliDecompressSync(br.body).toString('utf8')).toBe(docsHtml);

    const gzip = await get('gzip');
    expect(gzip.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gzip.body).toString('utf8')).toBe(docsHtml);

    for (const plain of [await get(), await get('identity'), await get('br;q=0, gzip;q=0')]) {
      expect(plain.status).toBe(200);
      expect(plain.headers['content-encoding']).toBeUndefined();
      expect(plain.body.toString('utf8')).toBe(docsHtml);
    }
  });
});
