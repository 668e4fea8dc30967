import { randomUUID } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import { Counter, Gauge, type Registry } from 'prom-client';
import { bearerTokenOf, verifyOnce } from '../auth/bearer-security.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import type { CapacityLimits } from '../config.js';
import { HttpProblem } from '../errors/problem.js';
import type { Logger } from '../logger.js';
import type { OpenApiDocument } from './contract.js';
import { isApi, Overloaded } from './overload.js';
import type { RedisCommands } from './rate-limit.js';

/**
 * How a request uses the server: an ordinary request (a small JSON body at most, answered from
 * the database) takes a place of the load-shedding gate; an upload or a download is a transfer,
 * which lasts as long as the client takes and is bounded by its own caps and a minimum rate.
 */
export type RequestKind = 'request' | 'upload' | 'download' | 'stream';

const isJsonMedia = (media: string) => /^application\/([\w.+-]+\+)?json$/.test(media);

/**
 * The kind of each operation, read from the contract: one whose request body is not JSON is an
 * upload, one whose success response is an event stream a stream, any other whose success
 * response is not JSON a download. Only the API's own paths (`/api/`) are transfers or streams:
 * the docs page and the contract are sent from memory.
 */
export function requestKinds(spec: OpenApiDocument): (method: string, path: string) => RequestKind {
  const transfers: { method: string; path: RegExp; kind: RequestKind }[] = [];
  for (const [template, item] of Object.entries(spec.paths)) {
    if (!isApi(template)) continue;
    // As the routers match: any case (the validator ignores it), a trailing slash or not.
    const path = new RegExp(
      `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}/?$`,
      'i',
    );
    for (const [method, operation] of Object.entries(item)) {
      const op = operation as {
        requestBody?: { content?: Record<string, unknown> };
        responses?: Record<string, { content?: Record<string, unknown> }>;
      };
      if (typeof op !== 'object' || op === null || op.responses === undefined) continue;
      const bodyMedia = Object.keys(op.requestBody?.content ?? {});
      const successMedia = Object.entries(op.responses)
        .filter(([status]) => /^2/.test(status))
        .flatMap(([, response]) => Object.keys(response.content ?? {}));
      const kind: RequestKind | undefined = bodyMedia.some((m) => !isJsonMedia(m))
        ? 'upload'
        : successMedia.includes('text/event-stream')
          ? 'stream'
          : successMedia.some((m) => !isJsonMedia(m))
            ? 'download'
            : undefined;
      if (kind !== undefined) transfers.push({ method: method.toUpperCase(), path, kind });
    }
  }
  return (method, path) => {
    const asked = method === 'HEAD' ? 'GET' : method;
    return transfers.find((t) => t.method === asked && t.path.test(path))?.kind ?? 'request';
  };
}

/** A place taken under a key; `release` gives it back (more than once is harmless). */
export type Release = () => void;

/** Counts what each principal holds: in this process, or in Redis for every process together. */
export interface ConcurrencyStore {
  /** One of `limit` places under `key`, or undefined when they are all taken. */
  acquire(key: string, limit: number): Promise<Release | undefined>;
  close(): void;
}

/** Places counted in this process alone (no REDIS_URL). */
export function memoryConcurrency(): ConcurrencyStore {
  const held = new Map<string, number>();
  return {
    async acquire(key, limit) {
      const count = held.get(key) ?? 0;
      if (count >= limit) return undefined;
      held.set(key, count + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = held.get(key)! - 1;
        if (left === 0) held.delete(key);
        else held.set(key, left);
      };
    },
    close() {},
  };
}

/** Each place is a lease: a member of the key's sorted set, scored by when it lapses (Redis's own clock). */
const ACQUIRE = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;
/** Extends the leases still held (KEYS[i], ARGV[i + 1]) by ARGV[1] ms; a lapsed one stays lapsed. */
const RENEW = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0`;
/** How long a lease lives without renewal: a process that dies holds its places this long at most. */
const LEASE_MS = 30_000;
const RENEW_BATCH = 500;
/** The longest a request waits for Redis to grant a place; later, it goes on without one (fail open). */
const ANSWER_MS = 250;

/**
 * Places shared by every process through Redis, as the rate limits are (Stripe's concurrent
 * requests limiter): a place is a lease in a sorted set per key that lapses unless renewed, so a
 * process that dies mid-request does not hold its places for ever; this process renews its
 * leases every third of their life. If Redis fails, requests pass (fail open, as the rate limits
 * do), logged at error once per outage.
 */
export function redisConcurrency(redis: RedisCommands, logger: Logger, prefix = 'tasks-api:cc:'): ConcurrencyStore {
  const held = new Map<string, string>(); // member → key
  let failing = false;
  const failed = (error: unknown) => {
    if (!failing)
      logger.error('concurrency store failed; letting requests through until redis is back', { error: String(error) });
    failing = true;
  };
  const renewer = setInterval(() => {
    const leases = [...held];
    for (let i = 0; i < leases.length; i += RENEW_BATCH) {
      const batch = leases.slice(i, i + RENEW_BATCH);
      redis
        .sendCommand([
          'EVAL',
          RENEW,
          String(batch.length),
          ...batch.map(([, key]) => key),
          String(LEASE_MS),
          ...batch.map(([member]) => member),
        ])
        .catch(failed);
    }
  }, LEASE_MS / 3).unref();
  return {
    async acquire(name, limit) {
      const key = `${prefix}${name}`;
      const member = randomUUID();
      const asked = redis.sendCommand(['EVAL', ACQUIRE, '1', key, String(limit), String(LEASE_MS), member]);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ANSWER_MS)));
      try {
        const granted = await Promise.race([asked, late]);
        if (granted === 'late') {
          // A Redis that hangs is an outage too: the request goes on, and a lease granted after all is given back.
          asked
            .then(
              (late) => Number(late) === 1 && redis.sendCommand(['ZREM', key, member]),
              () => undefined,
            )
            .catch(() => undefined);
          throw new Error(`no answer within ${ANSWER_MS} ms`);
        }
        if (failing) logger.info('concurrency store is back; concurrency limits enforced again');
        failing = false;
        if (Number(granted) !== 1) return undefined;
      } catch (error) {
        failed(error);
        return () => undefined;
      } finally {
        clearTimeout(timer);
      }
      held.set(member, key);
      return () => {
        if (!held.delete(member)) return;
        redis.sendCommand(['ZREM', key, member]).catch(failed);
      };
    },
    close() {
      clearInterval(renewer);
    },
  };
}

type Cap = 'user' | 'ip' | 'user_uploads' | 'user_downloads' | 'user_streams';

/** 429: this principal already has as many requests (or transfers) in progress as it may. */
export class ConcurrencyLimited extends HttpProblem {
  constructor(
    readonly cap: Cap,
    limit: number,
  ) {
    const what = {
      user: `requests in progress for this user`,
      ip: `requests in progress from this address without a valid token`,
      user_uploads: `uploads in progress for this user`,
      user_downloads: `downloads in progress for this user`,
      user_streams: `change streams open for this user`,
    }[cap];
    super(
      429,
      'CONCURRENCY_LIMITED',
      'Too many concurrent requests',
      `${limit} ${what} already; retry after 1 second, or once one of them has finished.`,
      {
        headers: { 'Retry-After': '1' },
      },
    );
  }
}

/** 408: a JSON body that did not arrive within CLIENT_BODY_TIMEOUT_MS. The connection closes after the answer. */
export class BodyTimeout extends HttpProblem {
  constructor(ms: number) {
    super(
      408,
      'BODY_TIMEOUT',
      'Request body timeout',
      `The request body did not arrive within ${ms} ms of its headers.`,
      { headers: { Connection: 'close' } },
    );
  }
}

/** 408: an upload slower than the server's minimum rate. Nothing of it is kept; the connection closes after the answer. */
export class TransferTooSlow extends HttpProblem {
  constructor(minBytesPerSecond: number, windowMs: number) {
    super(
      408,
      'TRANSFER_TOO_SLOW',
      'Transfer too slow',
      `The upload sent less than ${minBytesPerSecond} bytes a second over ${windowMs / 1000} s; nothing of it was kept.`,
      {
        headers: { Connection: 'close' },
      },
    );
  }
}

const closing = new WeakMap<Response, (() => void)[]>();
/** Runs `work` when the response closes (finished, or its connection gone): one listener per response for all of them. */
function onClose(res: Response, work: () => void): void {
  if (res.destroyed || res.writableFinished) return work();
  let list = closing.get(res);
  if (list === undefined) {
    const works: (() => void)[] = [];
    list = works;
    closing.set(res, works);
    res.once('close', () => {
      for (const each of works) each();
    });
  }
  list.push(work);
}

/**
 * A request refused before its body was read closes its connection after the answer: otherwise
 * Node reads the rest of the body first, at whatever pace the client sends it, and a refused
 * client would keep its connection for CLIENT_REQUEST_TIMEOUT_MS.
 */
function closeIfUnread(req: Request, res: Response): void {
  if (!req.complete) res.set('Connection', 'close');
}

/** The principal a request counts against: its verified user, or its client IP (TRUST_PROXY decides which) without a valid token. */
async function principalOf(req: Request, verifier: TokenVerifier): Promise<{ key: string; user: boolean }> {
  const token = bearerTokenOf(req.headers.authorization);
  if (token !== undefined) {
    try {
      return { key: `user:${(await verifyOnce(req, verifier, token)).sub}`, user: true };
    } catch {
      // the validator answers 401; meanwhile the request counts against its address
    }
  }
  // An IPv6 client is its /56, as the rate limiter counts it: one host has a whole prefix to rotate through.
  return { key: `ip:${ipKeyGenerator(req.ip ?? '')}`, user: false };
}

/**
 * Ends a transfer that moves fewer than the minimum bytes a second over a window: an upload is
 * aborted through `abort` (its handler answers 408 and removes what was stored), a download's
 * connection is destroyed. Progress is counted on the socket, where the client's pace shows: bytes
 * read from it (uploads, until the body is in), bytes the kernel took from it (downloads).
 */
function minimumRate(
  req: Request,
  res: Response,
  kind: 'upload' | 'download',
  limits: CapacityLimits,
  onSlow: () => void,
): void {
  if (kind === 'download') {
    const lifetime = setTimeout(onSlow, limits.transferMaxMs).unref();
    onClose(res, () => clearTimeout(lifetime));
  }
  if (limits.transferMinBytesPerSecond === 0) return;
  const socket = req.socket;
  const progress = kind === 'upload' ? () => socket.bytesRead : () => socket.bytesWritten - socket.writableLength;
  // Only the client's slowness counts: a download with nothing waiting to be sent, or an upload
  // whose bytes wait for the server (storage pushing back, the request not read yet), is the
  // server's own wait.
  const clientIsSlow =
    kind === 'upload' ? () => req.readableLength < req.readableHighWaterMark : () => socket.writableLength > 0;
  const needed = (limits.transferMinBytesPerSecond * limits.transferRateWindowMs) / 1000;
  let last = progress();
  const timer = setInterval(() => {
    const now = progress();
    if (now - last < needed && clientIsSlow()) {
      clearInterval(timer);
      onSlow();
    }
    last = now;
  }, limits.transferRateWindowMs).unref();
  const stop = () => clearInterval(timer);
  onClose(res, stop);
  if (kind === 'upload') req.once('end', stop); // once the body is in, the rest is the server's time
}

/** `parse` (a body parser) answering 408 when the body takes longer than `ms` to arrive. */
function within(ms: number, parse: RequestHandler): RequestHandler {
  return (req, res, next) => {
    let done = false;
    const finish = (error?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      next(error);
    };
    const timer = setTimeout(() => {
      req.pause(); // read no more of it: the answer closes the connection
      finish(new BodyTimeout(ms));
    }, ms);
    parse(req, res, finish);
  };
}

export interface CapacityGuard {
  /** Per-principal caps, the body deadline, then the shared gate (`admit`) for ordinary requests; the transfer pool and minimum rate for transfers. */
  middleware: RequestHandler[];
  close(): void;
}

/**
 * Capacity isolated per principal (DESIGN rule 13), in front of the load-shedding gate. Every API
 * request first counts against its principal: its user when its bearer token verifies (verified
 * once per request, shared with the rate limiter and the security handler), else its client IP.
 * Over its cap a principal gets 429 at once, so one user or one address can never fill the gate
 * for everyone (the gate's 503 means the whole process is saturated). Then:
 * - an ordinary request reads its JSON body within `bodyTimeoutMs` while holding no place of the
 *   gate (a body that trickles in costs the server a socket, nothing more), and only then waits
 *   for a place (`admit`);
 * - an upload or download takes a place of its own pool (`maxTransfers`, 503 when full) and of its
 *   user's transfer caps, never of the gate, and is ended when it moves slower than the minimum
 *   rate; a change stream likewise takes a place of the process's streams (`maxStreams`) and of
 *   its user's (`streamsPerUser`). Transfers without a valid token are ordinary requests: the validator refuses them (401)
 *   before any byte of them is read.
 */
export function capacityGuard(
  limits: CapacityLimits,
  deps: {
    store: ConcurrencyStore;
    kindOf: (method: string, path: string) => RequestKind;
    verifier: TokenVerifier;
    registry: Registry;
    bodyLimitBytes: number;
    /** The load-shedding gate, for ordinary requests. */
    admit: RequestHandler;
  },
): CapacityGuard {
  const refused = new Counter({
    name: 'http_requests_concurrency_limited_total',
    help: 'API requests answered 429 because their principal was at a concurrency cap, by cap.',
    labelNames: ['cap'] as const,
    registers: [deps.registry],
  });
  const timedOut = new Counter({
    name: 'http_request_body_timeouts_total',
    help: 'JSON bodies that did not arrive within CLIENT_BODY_TIMEOUT_MS (408).',
    registers: [deps.registry],
  });
  const tooSlow = new Counter({
    name: 'http_transfers_too_slow_total',
    help: 'Uploads (408) and downloads (connection closed) ended for moving slower than TRANSFER_MIN_BYTES_PER_SECOND, by kind.',
    labelNames: ['kind'] as const,
    registers: [deps.registry],
  });
  const transfersShed = new Counter({
    name: 'http_transfers_shed_total',
    help: 'Uploads and downloads answered 503 because TRANSFERS_MAX were in progress.',
    registers: [deps.registry],
  });
  const streamsShed = new Counter({
    name: 'http_streams_shed_total',
    help: 'Change streams answered 503 because STREAMS_MAX were open.',
    registers: [deps.registry],
  });
  let streams = 0;
  new Gauge({
    name: 'http_streams_open',
    help: 'Change streams open in this process.',
    registers: [deps.registry],
    collect() {
      this.set(streams);
    },
  });
  const active = { upload: 0, download: 0 };
  new Gauge({
    name: 'http_transfers_in_progress',
    help: 'Uploads and downloads in progress in this process, by kind.',
    labelNames: ['kind'] as const,
    registers: [deps.registry],
    collect() {
      this.set({ kind: 'upload' }, active.upload);
      this.set({ kind: 'download' }, active.download);
    },
  });
  const parse = express.json({ limit: deps.bodyLimitBytes, type: ['application/json', 'application/*+json'] });
  const parseWithin = within(limits.bodyTimeoutMs, parse);

  const take = async (req: Request, res: Response, key: string, limit: number, cap: Cap): Promise<void> => {
    const release = await deps.store.acquire(key, limit);
    if (release === undefined) {
      refused.inc({ cap });
      closeIfUnread(req, res);
      throw new ConcurrencyLimited(cap, limit);
    }
    onClose(res, release);
  };

  const principal: RequestHandler = async (req, res, next) => {
    if (!isApi(req.path)) return next();
    const who = await principalOf(req, deps.verifier);
    let kind = deps.kindOf(req.method, req.path);
    if (!who.user) kind = 'request';
    req.capacityKind = kind;
    if (kind === 'request') {
      await take(req, res, who.key, who.user ? limits.perUser : limits.perIp, who.user ? 'user' : 'ip');
      return next();
    }
    if (kind === 'stream') {
      // Long-lived and nearly idle: a place of the user's streams and of the process's, nothing
      // of the gate or the transfers; the stream keeps its own heartbeat and lifetime (changes/stream.ts).
      await take(req, res, `stream:${who.key}`, limits.streamsPerUser, 'user_streams');
      if (streams >= limits.maxStreams) {
        streamsShed.inc();
        throw new Overloaded('streams_full', 1);
      }
      streams += 1;
      onClose(res, () => (streams -= 1));
      return next();
    }
    await take(
      req,
      res,
      `${kind}:${who.key}`,
      kind === 'upload' ? limits.uploadsPerUser : limits.downloadsPerUser,
      kind === 'upload' ? 'user_uploads' : 'user_downloads',
    );
    if (active.upload + active.download >= limits.maxTransfers) {
      transfersShed.inc();
      closeIfUnread(req, res);
      throw new Overloaded('transfers_full', 1);
    }
    active[kind] += 1;
    onClose(res, () => (active[kind] -= 1));
    const abort = new AbortController();
    req.transferAborted = abort.signal;
    minimumRate(req, res, kind, limits, () => {
      tooSlow.inc({ kind });
      if (kind === 'upload')
        abort.abort(new TransferTooSlow(limits.transferMinBytesPerSecond, limits.transferRateWindowMs));
      else res.destroy();
    });
    next();
  };
  // The API's bodies have a deadline; the operational endpoints take none (Node's request timeout bounds them).
  const body: RequestHandler = (req, res, next) => {
    if (!isApi(req.path)) return parse(req, res, next);
    parseWithin(req, res, (error?: unknown) => {
      if (error instanceof BodyTimeout) timedOut.inc();
      next(error);
    });
  };
  const gate: RequestHandler = (req, res, next) =>
    isApi(req.path) && req.capacityKind === 'request' ? deps.admit(req, res, next) : next();
  return { middleware: [principal, body, gate], close: () => deps.store.close() };
}
