import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** How the receiver answers: a status, or misbehaving the ways real receivers do. */
export type ReceiverMode =
  'ok' | '500' | '503-retry-after' | '429' | 'timeout' | 'slow' | 'redirect' | 'huge' | '400' | '410';

export interface ModeOptions {
  /** The `Retry-After` value of '429' and '503-retry-after' (default '30'); an HTTP-date works too. */
  retryAfter?: string;
  /** How long 'slow' waits before its 200 (default 1000 ms). */
  delayMs?: number;
  /** How much 'huge' streams (default 10 MB). */
  bytes?: number;
}

export interface Delivery {
  /** The first path segment of the request (`${receiver.url}/<key>`), so each test files its own requests apart. */
  key: string;
  /** The `webhook-id` header ('' when missing). */
  id: string;
  headers: Record<string, string>;
  /** The JSON body, parsed (undefined when it is not JSON): what a sender sent, so a test says what it expects to read there. */
  body: unknown;
  raw: string;
  /** The signature verified with `standardwebhooks`, with the key's secret (or the default one). */
  verified: boolean;
  /** When the request (its whole body) arrived, ms since the epoch. */
  at: number;
  /** The status it was answered with; undefined while (or if forever) held. */
  answered?: number;
  /** When the exchange ended (answered, or the sender gave up and closed it), ms since the epoch; undefined while it lasts. */
  endedAt?: number;
  /** For 'huge': how many body bytes were written before the stream ended or the client went away. */
  sentBytes?: number;
}

export interface Receiver {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  port: number;
  deliveries: Delivery[];
  /** TCP connections accepted so far. */
  connections(): number;
  mode(mode: ReceiverMode, options?: ModeOptions): void;
  /** The secret for every key without one of its own. */
  setSecret(secret: string): void;
  /** The secret for requests under `/<key>`. */
  setSecret(key: string, secret: string): void;
  /** The next `count` requests under `/<key>` are answered `status` (no Retry-After), whatever the mode. */
  failNext(key: string, count: number, status: number): void;
  /** The next `count` requests under `/<key>` are held unanswered until `close()`. */
  holdNext(key: string, count: number): void;
  waitFor(predicate: (deliveries: Delivery[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Closes every open connection now (idle keep-alive ones included), so the next request needs a new one. */
  dropConnections(): void;
  /** Destroys every socket (held requests too) and stops listening. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 5 * 1024 * 1024;

function verify(secret: string | undefined, raw: string, headers: Record<string, string>): boolean {
  if (secret === undefined) return false;
  try {
    new Webhook(secret).verify(raw, headers, { jsonParse: false });
    return true;
  } catch {
    return false;
  }
}

/**
 * A real webhook receiver on 127.0.0.1, port 0, for tests: it records every request (verifying its
 * Standard Webhooks signature with the `standardwebhooks` library, as a receiver in production
 * would) and answers as told — including never, slowly, with a redirect or with a huge body.
 */
export async function startReceiver(options: { secret?: string } = {}): Promise<Receiver> {
  const deliveries: Delivery[] = [];
  const sockets = new Set<Socket>();
  const secrets = new Map<string, string>();
  const failing = new Map<string, { count: number; status: number }>();
  const holding = new Map<string, number>();
  let defaultSecret = options.secret;
  let current: { mode: ReceiverMode; options: ModeOptions } = { mode: 'ok', options: {} };
  let connections = 0;

  const takeOne = <T extends { count: number }>(map: Map<string, T>, key: string): T | undefined => {
    const entry = map.get(key);
    if (entry === undefined || entry.count <= 0) return undefined;
    entry.count -= 1;
    return entry;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers))
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
      const key = new URL(req.url ?? '/', 'http://receiver').pathname.split('/')[1] ?? '';
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const delivery: Delivery = {
        key,
        id: headers['webhook-id'] ?? '',
        headers,
        body,
        raw,
        verified: verify(secrets.get(key) ?? defaultSecret, raw, headers),
        at: Date.now(),
      };
      deliveries.push(delivery);
      res.on('close', () => (delivery.endedAt = Date.now()));

      const answer = (status: number, extra: http.OutgoingHttpHeaders = {}, text = '') => {
        delivery.answered = status;
        res.writeHead(status, { 'content-type': 'text/plain', ...extra }).end(text);
      };
      const held = holding.get(key) ?? 0;
      if (held > 0) {
        holding.set(key, held - 1);
        return; // never answered
      }
      const failure = takeOne(failing, key);
      if (failure) return answer(failure.status);

      const { mode, options: opts } = current;
      switch (mode) {
        case 'ok':
          return answer(200, {}, 'ok');
        case '500':
        case '400':
        case '410':
          return answer(Number(mode));
        case '429':
          return answer(429, { 'retry-after': opts.retryAfter ?? '30' });
        case '503-retry-after':
          return answer(503, { 'retry-after': opts.retryAfter ?? '30' });
        case 'redirect':
          return answer(302, { location: 'http://127.0.0.1:1/' });
        case 'timeout':
          return;
        case 'slow': {
          const timer = setTimeout(() => answer(200, {}, 'ok'), opts.delayMs ?? 1000);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case 'huge': {
          const total = opts.bytes ?? 10 * 1024 * 1024;
          const chunk = Buffer.alloc(64 * 1024, 'x');
          let sent = 0;
          delivery.answered = 200;
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
          const pump = () => {
            while (sent < total && !res.destroyed) {
              const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
              sent += piece.length;
              if (!res.write(piece)) return void res.once('drain', pump);
            }
            if (sent >= total) res.end();
          };
          res.on('close', () => (delivery.sentBytes = sent));
          pump();
          return;
        }
      }
    });
  });
  server.on('connection', (socket: Socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  function setSecret(keyOrSecret: string, secret?: string): void {
    if (secret === undefined) defaultSecret = keyOrSecret;
    else secrets.set(keyOrSecret, secret);
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    deliveries,
    connections: () => connections,
    mode(mode, opts = {}) {
      current = { mode, options: opts };
    },
    setSecret,
    failNext(key, count, status) {
      failing.set(key, { count, status });
    },
    holdNext(key, count) {
      holding.set(key, count);
    },
    async waitFor(predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(deliveries)) {
        if (Date.now() > deadline)
          throw new Error(`receiver: condition not met within ${timeoutMs} ms (${deliveries.length} deliveries)`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    dropConnections() {
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
