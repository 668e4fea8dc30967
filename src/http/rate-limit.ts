import type { RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit, type Store } from 'express-rate-limit';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import { bearerTokenOf, verifyOnce } from '../auth/bearer-security.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { HttpProblem } from '../errors/problem.js';
import type { Logger } from '../logger.js';

/** What the limiter needs from a Redis client (node-redis's `sendCommand`). */
export interface RedisCommands {
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RateLimitOptions {
  /** Requests per minute for one verified user (authenticated routes) or one IP (the rest). */
  perMinute: number;
  /** Requests per minute for one IP on the auth endpoints (/api/v1/auth/…). */
  authPerMinute: number;
  /** Shared counters; without it each process counts on its own. */
  redis?: RedisCommands;
  /** Key prefix in Redis (tests use their own). */
  prefix?: string;
  verifier: TokenVerifier;
  logger: Logger;
}

/** 429 problem+json; `Retry-After` and the RateLimit headers are already on the response. */
export class RateLimited extends HttpProblem {
  constructor(retryAfterSeconds: number) {
    super(429, 'RATE_LIMITED', 'Too many requests', `Too many requests; retry after ${retryAfterSeconds} seconds.`, {
      headers: { 'Retry-After': String(retryAfterSeconds) },
    });
  }
}

/**
 * rate-limit-redis loads its scripts once, when the limiter starts; if Redis is not reachable at
 * that moment (it started after the API, or was down), the rejected load is kept and every later
 * count fails with it — the limiter failed open for good, even once Redis was back. This store
 * loads a script again on use whenever the last load failed.
 */
class ReloadingRedisStore extends RedisStore {
  override async increment(key: string) {
    this.incrementScriptSha = this.incrementScriptSha.catch(() => this.loadIncrementScript());
    return super.increment(key);
  }
  override async get(key: string) {
    this.getScriptSha = this.getScriptSha.catch(() => this.loadGetScript());
    return super.get(key);
  }
}

/** Orchestrator probes and scrapes are never limited. */
const UNLIMITED = /^\/(health\/(live|ready)|metrics)$/;
/**
 * The built-in issuer's endpoints, however the path is spelled: routing is case-sensitive (other
 * spellings are 404), but this budget must hold even if a spelling ever reached a handler.
 */
const isAuthPath = (path: string) => path.toLowerCase().startsWith('/api/v1/auth/');

/**
 * express-rate-limit, one window per minute: a verified user is counted by their `sub` (the
 * token is verified here through the verifier's cache; an unverifiable one counts against the
 * IP), anyone else by client IP — which is X-Forwarded-For only when TRUST_PROXY says so. The
 * auth endpoints get their own, stricter per-IP budget. With Redis the counters are shared by
 * every process; if Redis fails, requests pass (fail open) and the failure is logged at error.
 * Responses carry the standard `RateLimit` / `RateLimit-Policy` headers; over the limit, 429.
 */
export function rateLimits(options: RateLimitOptions): RequestHandler[] {
  const { verifier, logger } = options;
  const store = (prefix: string): Store | undefined =>
    options.redis &&
    new ReloadingRedisStore({
      prefix: `${options.prefix ?? 'tasks-api:rl:'}${prefix}`,
      sendCommand: (...args: string[]) => options.redis!.sendCommand(args) as Promise<RedisReply>,
    });
  const common = {
    windowMs: 60_000,
    standardHeaders: 'draft-8' as const,
    legacyHeaders: false,
    passOnStoreError: true,
    // Our own messages, at the right levels; its validation warnings are about its defaults.
    logger: {
      error: (error: unknown, message?: string) =>
        logger.error('rate limit store failed; letting requests through', { error: String(error), detail: message }),
      warn: (error: unknown) => logger.warn('rate limiter warning', { error: String(error) }),
    },
    handler: (
      req: Parameters<RequestHandler>[0],
      res: Parameters<RequestHandler>[1],
      next: Parameters<RequestHandler>[2],
    ) => {
      const retryAfter = Number(res.getHeader('Retry-After') ?? 60);
      logger.warn('rate limited', { request_id: req.id, method: req.method, path: req.path });
      next(new RateLimited(retryAfter));
    },
  };

  const perUser = rateLimit({
    ...common,
    identifier: 'per-user',
    limit: options.perMinute,
    skip: (req) => UNLIMITED.test(req.path) || isAuthPath(req.path),
    store: store('user:'),
    async keyGenerator(req) {
      // Parsed exactly as the security handler parses it, so a token it accepts counts per user.
      const token = bearerTokenOf(req.headers.authorization);
      if (token) {
        try {
          return `user:${(await verifyOnce(req, verifier, token)).sub}`;
        } catch {
          // the validator answers 401; the attempt still counts, against the IP
        }
      }
      return `ip:${ipKeyGenerator(req.ip ?? '')}`;
    },
  });
  const auth = rateLimit({
    ...common,
    identifier: 'auth',
    limit: options.authPerMinute,
    skip: (req) => !isAuthPath(req.path),
    store: store('auth:'),
    keyGenerator: (req) => `ip:${ipKeyGenerator(req.ip ?? '')}`,
  });
  return [auth, perUser];
}
