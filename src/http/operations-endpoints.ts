import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib, gzip } from 'node:zlib';
import { InvalidToken, MissingToken } from '../auth/errors.js';
import { NoRoute, ServiceUnavailable } from '../errors/problem.js';
import type { Contract } from './contract.js';
import { StreamedBody, type Handlers } from './handler.js';
import type { Metrics } from './metrics.js';

/**
 * The operational endpoints: liveness, readiness (a database round trip, and 503 from the moment
 * the process begins to shut down, so a load balancer stops sending before it stops listening, and
 * while load shedding has no room),
 * the contract itself and its rendered reference.
 */
export function operationsEndpoints(deps: {
  contract: Contract;
  ping: () => Promise<void>;
  metrics: Metrics;
  /** When set, /metrics needs `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string;
  /** /metrics is not served (production without a token): 404, as for a path the API lacks. */
  metricsOff?: boolean;
  /** True once the process is shutting down. */
  stopping?: () => boolean;
  /** Why the process has no room for more traffic right now (load shedding), if it has none. */
  saturated?: () => string | undefined;
}): Handlers<'getLiveness' | 'getReadiness' | 'getOpenApiDocument' | 'getOpenApiYaml' | 'getDocs' | 'getMetrics'> {
  const { contract, ping, metrics, metricsToken, metricsOff = false, stopping = () => false } = deps;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  const expected = metricsToken === undefined ? undefined : digest(metricsToken);
  const docs = docsPage(contract.docsPath);
  const databaseCheck = sharedCheck(ping);
  return {
    getLiveness: async () => ({ status: 200, body: { status: 'ok' } }),
    getReadiness: async () => {
      if (stopping()) throw new ServiceUnavailable('The server is shutting down; send requests to another instance.');
      const saturated = deps.saturated?.();
      if (saturated !== undefined)
        throw new ServiceUnavailable(`The server is at capacity (${saturated}); send requests to another instance.`);
      try {
        await databaseCheck();
      } catch (error) {
        throw new ServiceUnavailable('The database does not answer.', error);
      }
      return { status: 200, body: { status: 'ok', checks: { database: 'ok' } } };
    },
    getOpenApiDocument: async () => ({ status: 200, body: contract.spec }),
    getOpenApiYaml: async () => ({
      status: 200,
      body: contract.specYaml,
      headers: { 'Content-Type': 'application/yaml; charset=utf-8' },
    }),
    async getDocs({ raw }) {
      // Brotli when accepted (the smaller), else gzip, whatever the order the client lists them in.
      const accepts = (coding: string) =>
        raw.get('accept-encoding') !== undefined && raw.acceptsEncodings(coding) === coding;
      const encoding = accepts('br') ? 'br' : accepts('gzip') ? 'gzip' : undefined;
      const { body, contentSecurityPolicy } = await docs(encoding);
      return {
        status: 200,
        body: new StreamedBody(
          (async function* () {
            yield body;
          })(),
        ),
        headers: {
          'Content-Type': 'text/html; charset=utf-8',
          'Cache-Control': 'no-cache',
          'Content-Security-Policy': contentSecurityPolicy,
          ...(encoding === undefined ? {} : { 'Content-Encoding': encoding }),
          'Content-Length': String(body.length),
          Vary: 'Accept-Encoding',
        },
      };
    },
    async getMetrics({ raw }) {
      if (metricsOff) throw new NoRoute('GET', raw.path);
      if (expected !== undefined) {
        const header = raw.get('authorization');
        if (!header) throw new MissingToken();
        const given = /^Bearer (.+)$/i.exec(header)?.[1];
        if (given === undefined || !timingSafeEqual(digest(given), expected)) {
          throw new InvalidToken('The metrics token is not valid.', 'bad_metrics_token');
        }
      }
      const { contentType, body } = await metrics.render();
      return { status: 200, body, headers: { 'Content-Type': contentType, 'Cache-Control': 'no-store' } };
    },
  };
}

/**
 * The reference page at `path` in the form asked for. Nothing is read before the first request;
 * then the page is kept once as bytes (off the JavaScript heap: ~2.7 MB), and each compressed form
 * once, made on the first request that accepts it (brotli ~0.65 MB, gzip ~0.74 MB). Every response
 * shares those buffers: a client that stops reading holds a reference, not a copy of its own.
 */
function docsPage(path: string) {
  let page: Promise<{ html: Buffer; contentSecurityPolicy: string }> | undefined;
  const compressed = new Map<'br' | 'gzip', Promise<Buffer>>();
  const load = () =>
    (page ??= readFile(path).then(
      (html) => ({ html, contentSecurityPolicy: docsContentSecurityPolicy(html.toString('utf8')) }),
      (error: unknown) => {
        page = undefined; // read again on the next request
        throw error;
      },
    ));
  return async (encoding: 'br' | 'gzip' | undefined) => {
    const { html, contentSecurityPolicy } = await load();
    if (encoding === undefined) return { body: html, contentSecurityPolicy };
    let body = compressed.get(encoding);
    if (body === undefined) {
      body =
        encoding === 'br'
          ? promisify(brotliCompress)(html, {
              params: {
                [zlib.BROTLI_PARAM_QUALITY]: 5,
                [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT,
                [zlib.BROTLI_PARAM_SIZE_HINT]: html.length,
              },
            })
          : promisify(gzip)(html, { level: 6 });
      compressed.set(encoding, body);
    }
    return { body: await body, contentSecurityPolicy };
  };
}

/** How long one database check answers every readiness probe. */
const READY_CHECK_MS = 1000;
/** The longest a probe waits for the check: a database that hangs is not ready. */
const READY_WAIT_MS = 2000;

/**
 * The database check of readiness, shared by every probe: its result answers all of them for
 * {@link READY_CHECK_MS}, and at most one ping is in flight, whoever asks, so a flood of probes
 * costs one ping a second and can never fill the pool's wait queue (which closes admission).
 * A ping still unanswered after {@link READY_WAIT_MS} fails the probes waiting for it.
 */
export function sharedCheck(ping: () => Promise<void>): () => Promise<void> {
  let last: { at: number; error?: unknown } | undefined;
  let running: Promise<void> | undefined;
  return () => {
    if (last !== undefined && performance.now() - last.at < READY_CHECK_MS)
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the probes share the ping's own rejection, unchanged
      return last.error === undefined ? Promise.resolve() : Promise.reject(last.error);
    running ??= ping()
      .then(
        () => void (last = { at: performance.now() }),
        (error: unknown) => {
          last = { at: performance.now(), error: error ?? new Error('ping failed') };
          throw error;
        },
      )
      .finally(() => (running = undefined));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${READY_WAIT_MS} ms`)), READY_WAIT_MS);
    });
    return Promise.race([running, deadline]).finally(() => clearTimeout(timer));
  };
}

/**
 * The reference page may run only its own inline scripts (pinned by hash) and load nothing from
 * anywhere else. Redoc's bundle has one third-party URL, its attribution logo on cdn.redoc.ly:
 * the policy blocks it, Redoc then shows the attribution as text, and the page never contacts a
 * third party.
 */
export function docsContentSecurityPolicy(html: string): string {
  const scriptHashes = [...html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/gi)].map(
    ([, source]) =>
      `'sha256-${createHash('sha256')
        .update(source ?? '')
        .digest('base64')}'`,
  );
  return [
    "default-src 'none'",
    `script-src ${scriptHashes.join(' ')}`,
    // Redoc's styled-components insert <style> elements at run time.
    "style-src 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}
