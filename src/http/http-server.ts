import { randomUUID } from 'node:crypto';
import { createServer, maxHeaderSize, type Server, type ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Socket } from 'node:net';
import { ipKeyGenerator } from 'express-rate-limit';
import type { Config } from '../config.js';
import { HttpProblem } from '../errors/problem.js';
import type { Logger } from '../logger.js';
import { securityHeaderValues } from './security-headers.js';

/**
 * The HTTP server, with limits on what a client may hold: Node's defaults let a connection that
 * never finishes its headers live for a minute and a slow request for five (slowloris), and
 * accept any number of connections. Here headers must arrive within `headersTimeoutMs` and the
 * whole request within `requestTimeoutMs` (else 408 and the connection closes; checked every
 * second, not every 30 s), an idle keep-alive connection closes after `keepAliveTimeoutMs`, and
 * connections beyond `maxConnections` (or `maxConnectionsPerIp` from one address) are refused at accept.
 * What Node's HTTP parser refuses (and those timeouts) is answered as problem+json, not Node's bare
 * status line (see {@link answerClientErrors}), and logged at warn on `logger`.
 */
export function createHttpServer(limits: Config['http'], logger?: Logger): Server {
  const server = createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1000,
    // Node's own check answers a bare 400 before any listener runs; the app's `requireHost` answers instead.
    requireHostHeader: false,
  });
  server.maxConnections = limits.maxConnections;
  if (limits.maxConnectionsPerIp > 0) limitConnectionsPerAddress(server, limits.maxConnectionsPerIp);
  answerClientErrors(server, limits, logger);
  return server;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/** An error as Node's HTTP server hands it to 'clientError' (llhttp's code and reason, what it had read). */
interface ClientError extends Error {
  code?: string;
  reason?: string;
  bytesParsed?: number;
  rawPacket?: Buffer;
}

/**
 * The problem for what the parser refused, in words safe to show: never the bytes that were sent.
 * llhttp's `reason` (a constant string of its own) only picks the more precise of two sentences.
 */
function clientProblem(error: ClientError, limits: Config['http']): HttpProblem {
  const malformed = (detail: string) => new HttpProblem(400, 'MALFORMED_REQUEST', 'Malformed request', detail);
  const reason = error.reason ?? '';
  const bothLengths = 'Content-Length and Transfer-Encoding must not both be sent.';
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new HttpProblem(
        431,
        'HEADERS_TOO_LARGE',
        'Request header fields too large',
        `The request line and header fields exceed ${maxHeaderSize} bytes, the most this server accepts.`,
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HttpProblem(
        408,
        'REQUEST_TIMEOUT',
        'Request timeout',
        `The request was not received in time: its headers must arrive within ${limits.headersTimeoutMs} ms, and all of it within ${limits.requestTimeoutMs} ms.`,
      );
    case 'HPE_INVALID_HEADER_TOKEN':
      if (/whitespace/i.test(reason))
        return malformed('A header line has whitespace where none is allowed (or is folded).');
      if (/value/i.test(reason)) return malformed('A header value contains a control character.');
      return malformed('A header name contains a character that is not allowed.');
    case 'HPE_INVALID_METHOD':
    case 'HPE_INVALID_VERSION':
    case 'HPE_INVALID_CONSTANT':
      return malformed('The request line is malformed.');
    case 'HPE_INVALID_URL':
      return malformed('The request target contains a character that is not allowed.');
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      if (/transfer-encoding/i.test(reason)) return malformed(bothLengths);
      if (/duplicate/i.test(reason)) return malformed('Content-Length is sent more than once.');
      return malformed('Content-Length is not valid.');
    case 'HPE_INVALID_TRANSFER_ENCODING':
      if (/content-length/i.test(reason)) return malformed(bothLengths);
      return malformed('Transfer-Encoding is not valid: chunked must be its last coding.');
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return malformed('The chunked request body is malformed.');
    case 'HPE_CR_EXPECTED':
    case 'HPE_LF_EXPECTED':
    case 'HPE_STRICT':
      return malformed('A line of the request does not end in CRLF, or has characters where none are allowed.');
    case 'HPE_PAUSED_H2_UPGRADE':
      return malformed('HTTP/2 is not spoken on this connection; use HTTP/1.1.');
    default:
      return malformed('The request is not valid HTTP/1.1.');
  }
}

/** A request line whose target is a plain origin-form path (RFC 9112): method, path, optional query, version. */
const REQUEST_LINE =
  /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ (\/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*)(?:\?[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*)? HTTP\/\d\.\d$/;

/**
 * The path of the refused request, when the packet the parser failed on holds its request line
 * (the last request that starts in it before the point of failure) and that line is well-formed;
 * else `/`. Only characters a path may hold get through, so nothing the client sent is echoed raw.
 */
function requestPath(error: ClientError): string {
  const packet = error.rawPacket;
  if (!Buffer.isBuffer(packet)) return '/';
  const end = Math.min(packet.length, error.bytesParsed ?? packet.length);
  let start = 0;
  for (let at = packet.indexOf('\r\n\r\n'); at !== -1 && at + 4 <= end; at = packet.indexOf('\r\n\r\n', at + 4))
    start = at + 4;
  const lineEnd = packet.indexOf('\r\n', start);
  if (lineEnd === -1 || lineEnd - start > 8192) return '/';
  return REQUEST_LINE.exec(packet.toString('latin1', start, lineEnd))?.[1] ?? '/';
}

const acceptableId = /^[\w.:-]{1,128}$/;

/**
 * How long a refused connection may stay open after its answer, reading and discarding what the
 * client still sends: closing with unread bytes would reset the connection, and the client could
 * lose the answer (nginx's lingering close).
 */
const LINGER_MS = 2000;

/**
 * Every request Node's HTTP parser refuses (a control character in a header, headers over
 * maxHeaderSize, a malformed request line, a bad Content-Length or Transfer-Encoding…) and every
 * request not received within the client timeouts is answered problem+json like every other
 * error, with an X-Request-Id and the app's security headers, instead of Node's bare
 * `400 Bad Request`, and the connection closes: 400 `malformed-request`, 431 `headers-too-large`,
 * 408 `request-timeout`. Nothing is written to a connection the client reset, or once an answer
 * has started on it (it is destroyed, as Node does). One warn line per refusal (code, status,
 * request id, peer address), never the bytes.
 */
function answerClientErrors(server: Server, limits: Config['http'], logger: Logger | undefined): void {
  const answered = new WeakSet<Socket>();
  // The same security headers the app sets (security-headers.ts), worked out once per server.
  const securityHeaders = securityHeaderValues();
  server.on('clientError', (error: ClientError, socket: Socket) => {
    if (answered.has(socket)) return; // the parser fails again on whatever else arrives: discarded
    // The response in flight on this connection, if the request had reached the app.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const problem = clientProblem(error, limits);
    // The answer goes in the slot of the request the app is working on, if any: its id and path.
    const appId = inFlight?.getHeader('x-request-id');
    const requestId = typeof appId === 'string' && acceptableId.test(appId) ? appId : randomUUID();
    const appPath = inFlight?.req?.url?.split('?')[0];
    const instance = appPath !== undefined && /^\/[\x21-\x7e]*$/.test(appPath) ? appPath : requestPath(error);
    const body = JSON.stringify(problem.toProblem(instance, requestId));
    const headers: Record<string, string> = {
      Date: new Date().toUTCString(),
      'Content-Type': 'application/problem+json; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      Connection: 'close',
      'Cache-Control': 'no-store',
      'X-Request-Id': requestId,
      ...securityHeaders,
    };
    const head = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    answered.add(socket);
    logger?.warn('request refused by the HTTP server', {
      request_id: requestId,
      code: error.code ?? 'unknown',
      status: problem.status,
      remote_address: socket.remoteAddress ?? null,
    });
    const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref();
    socket.once('close', () => clearTimeout(linger));
    socket.end(`HTTP/1.1 ${problem.status} ${REASONS[problem.status]}\r\n${head}\r\n${body}`);
  });
}

/**
 * An HTTP/1.1 request without `Host` is malformed (RFC 9112 §3.2: the server must answer 400).
 * Node checks it itself unless told not to (createHttpServer does), with a bare 400 no listener
 * sees; here it is the same 400 malformed-request problem as the parser's refusals, with the
 * request's id, and the connection closes.
 */
export const requireHost: RequestHandler = (req, _res, next) => {
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined) {
    next(
      new HttpProblem(
        400,
        'MALFORMED_REQUEST',
        'Malformed request',
        'An HTTP/1.1 request must carry a Host header (RFC 9112, section 3.2).',
        { headers: { Connection: 'close' } },
      ),
    );
    return;
  }
  next();
};

/**
 * At most `max` connections open at once from one address (HAProxy's per-source limit, nginx's
 * limit_conn): more are closed as they are accepted, so one client cannot take every connection
 * the server allows (MAX_CONNECTIONS) with sockets that send nothing. The address is the peer's:
 * behind a proxy every connection comes from the proxy, which is why TRUST_PROXY turns the default
 * off (the proxy limits its clients).
 */
function limitConnectionsPerAddress(server: Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // An IPv6 peer is its /56, as the rate limiter counts it.
    const address = ipKeyGenerator(socket.remoteAddress ?? '');
    const count = (open.get(address) ?? 0) + 1;
    if (count > max) {
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = open.get(address)! - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

/**
 * Why the server could not take its port, in one line with what to do: a port in use (another
 * server, or an earlier run still going) or one this user may not bind (below 1024). `main`
 * prints it alone, without a stack, and exits 1.
 */
export class ListenFailed extends Error {
  override name = 'ListenFailed';
  constructor(
    readonly code: 'EADDRINUSE' | 'EACCES',
    port: number,
    host: string | undefined,
    cause: unknown,
  ) {
    const where = host === undefined ? `port ${port}` : `${host}:${port}`;
    super(
      code === 'EADDRINUSE'
        ? `Cannot listen on ${where}: it is already in use (another tasks-api, or an earlier run still going?). Stop that process, or set PORT to a free port (PORT=0 picks one).`
        : `Cannot listen on ${where}: permission denied (ports below 1024 need privileges). Set PORT to a port above 1023.`,
      { cause },
    );
  }
}

/** `server.listen`, as a promise; a port in use or refused is a {@link ListenFailed}. */
export function listen(server: Server, port: number, host?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => {
      server.off('listening', listening);
      reject(
        error.code === 'EADDRINUSE' || error.code === 'EACCES'
          ? new ListenFailed(error.code, port, host, error)
          : error,
      );
    };
    const listening = () => {
      server.off('error', failed);
      resolve();
    };
    server.once('error', failed);
    server.once('listening', listening);
    server.listen(port, host);
  });
}
