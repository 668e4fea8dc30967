import cors from 'cors';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { BuiltinIssuer } from './auth/builtin/issuer.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import type { BlobStore } from './attachments/blob-store.js';
import { loadConfig, type Config } from './config.js';
import type { Database } from './db/database.js';
import { accessLog } from './http/access-log.js';
import { capacityGuard, memoryConcurrency, redisConcurrency, requestKinds } from './http/capacity.js';
import type { Contract } from './http/contract.js';
import { errorHandler } from './http/error-handler.js';
import { createMetrics, type Metrics } from './http/metrics.js';
import { overloadGuard } from './http/overload.js';
import { ServiceUnavailable } from './http/problem.js';
import { openApiRoutes } from './http/openapi.js';
import { rateLimits, type RedisCommands } from './http/rate-limit.js';
import { requestContext } from './http/request-context.js';
import type { Logger } from './logger.js';
import { buildOperations } from './operations.js';

export interface AppDeps {
  config: Pick<Config, 'bodyLimitBytes' | 'corsOrigins' | 'rateLimit'> & Partial<Pick<Config, 'metricsToken' | 'metricsOff' | 'trustProxy' | 'requestTimeoutMs' | 'attachments' | 'overload' | 'capacity' | 'webhooks'>>;
  /** Where attachments' bytes live (ATTACHMENT_STORAGE=s3); PostgreSQL itself when not given. */
  blobStore?: BlobStore;
  /** Shared rate-limit counters (a connected node-redis client), when REDIS_URL is set. */
  redis?: RedisCommands;
  /** Rate-limit key prefix in Redis (tests isolate themselves with it). */
  rateLimitPrefix?: string;
  database: Database;
  logger: Logger;
  verifier: TokenVerifier;
  /** The built-in issuer, when AUTH_BUILTIN is on; its operations answer 404 without it. */
  issuer?: BuiltinIssuer;
  contract: Contract;
  /** Check every response against the contract too (tests turn this on; it costs throughput). */
  validateResponses?: boolean;
  /** The process's metrics, when something besides the app adds to them (the webhook worker); the app's own otherwise. */
  metrics?: Metrics;
  /** True once the process is shutting down: readiness then answers 503 so load balancers stop sending. */
  stopping?: () => boolean;
  /**
   * Bench only (`npm run bench -- --ablation`, bench/lib/ablation-server.mjs): layers left out to
   * measure what each costs. Nothing in src/ or the configuration sets it; the API always runs
   * with every layer.
   */
  without?: ReadonlySet<AblatableLayer>;
}

/** The layers the ablation bench can leave out, one at a time (JWT verification: a bench verifier). */
export type AblatableLayer = 'validator' | 'rate-limit' | 'access-log' | 'metrics' | 'security-headers' | 'owner-scope';

/**
 * Headers a browser client may read from our responses: every one the API sends that is not
 * CORS-safelisted (Cache-Control, Content-Language, Content-Length, Content-Type, Expires,
 * Last-Modified, Pragma are), so a page can follow Location and Link, send back an ETag, honour
 * Retry-After, read a 401's challenge, a 405's Allow and a download's name and range.
 */
const EXPOSED_HEADERS = [
  'Location', 'ETag', 'Link', 'X-Request-Id', 'Retry-After', 'Idempotent-Replayed', 'RateLimit', 'RateLimit-Policy',
  'WWW-Authenticate', 'Allow', 'Content-Disposition', 'Content-Range', 'Accept-Ranges',
];
/** Request headers the contract uses, for CORS preflights (Content-Disposition names a raw upload; Range and If-Range resume a download). */
const ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'If-Match', 'If-None-Match', 'Idempotency-Key', 'X-Request-Id', 'Content-Disposition', 'Range', 'If-Range'];

/**
 * Security headers for a JSON API (helmet): nothing on a response may load or frame anything.
 * The reference page at /docs replaces the CSP with its own, which pins its inline scripts.
 */
function securityHeaders(): RequestHandler {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' },
  });
}

/**
 * CORS from an allow-list only: with none configured no CORS header is ever sent, so browsers
 * on other origins cannot read responses. Credentials (cookies) are never allowed: the API
 * authenticates by bearer token.
 */
function corsPolicy(origins: string[]): RequestHandler {
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    credentials: false,
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: 600,
  });
}

/**
 * Answers 503 problem+json (with Retry-After) to a request that is not answered in time, so a
 * client never waits on a hung dependency longer than that. The clock of a request whose body its
 * handler streams (an upload: any body but JSON) starts once the body is in: sending it takes as
 * long as the client takes, which CLIENT_REQUEST_TIMEOUT_MS bounds.
 */
function requestTimeout(ms: number): RequestHandler {
  return (req, res, next) => {
    let timer: NodeJS.Timeout | undefined;
    const start = () => {
      timer = setTimeout(() => {
        if (!res.headersSent) next(new ServiceUnavailable(`The request was not answered within ${ms} ms.`));
      }, ms);
      timer.unref();
    };
    if (req.is(['application/json', 'application/*+json']) === false) req.once('end', start);
    else start();
    res.once('close', () => clearTimeout(timer));
    next();
  };
}

/**
 * The whole HTTP application: request id → access log → metrics → security headers / CORS →
 * rate limits → per-principal concurrency → JSON body (size-limited, deadline) → load shedding
 * (or, for uploads and downloads, the transfer pool) → request timeout → OpenAPI validator (with the bearer security handler) → operation handlers →
 * problem+json errors.
 * Does no I/O; everything it needs arrives in `deps`.
 */
export function buildApp(deps: AppDeps): Express {
  const { config, database, logger, verifier, contract } = deps;
  const app = express();
  const metrics = deps.metrics ?? createMetrics(database);
  const without = deps.without ?? new Set<AblatableLayer>();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy ?? false);
  app.set('etag', false);
  app.use(requestContext());
  if (!without.has('access-log')) app.use(accessLog(logger));
  if (!without.has('metrics')) app.use(metrics.middleware);
  // Security headers and CORS before load shedding: a preflight is answered without queueing,
  // and a shed request's 503 carries Access-Control-Allow-Origin, so a browser can read it and
  // its Retry-After instead of seeing a network error.
  if (!without.has('security-headers')) app.use(securityHeaders());
  if (config.corsOrigins.length > 0 && !without.has('security-headers')) app.use(corsPolicy(config.corsOrigins));
  const overload = overloadGuard(config.overload ?? loadConfig({ NODE_ENV: 'test' }).overload, {
    poolWaiting: () => database.pool?.waitingCount ?? 0,
    registry: metrics.registry,
  });
  // Rate limits first: a principal over its budget costs a counter, nothing more. The token is
  // verified there once, and the capacity guard reuses that verification.
  if (!without.has('rate-limit')) {
    app.use(
      rateLimits({
        perMinute: config.rateLimit.perMinute,
        authPerMinute: config.rateLimit.authPerMinute,
        redis: deps.redis,
        prefix: deps.rateLimitPrefix,
        verifier,
        logger,
      }),
    );
  }
  // Per-principal caps, the JSON body (read within its deadline, holding no place), then the
  // load-shedding gate; transfers go to their own pool instead of the gate.
  const capacity = capacityGuard(config.capacity ?? loadConfig({ NODE_ENV: 'test' }).capacity, {
    store: deps.redis ? redisConcurrency(deps.redis, logger, deps.rateLimitPrefix && `${deps.rateLimitPrefix}cc:`) : memoryConcurrency(),
    kindOf: requestKinds(contract.spec),
    verifier,
    registry: metrics.registry,
    bodyLimitBytes: config.bodyLimitBytes,
    admit: overload.middleware,
  });
  app.use(capacity.middleware);
  app.use(requestTimeout(config.requestTimeoutMs ?? 15_000));
  app.use(
    openApiRoutes({
      spec: contract.spec,
      handlers: buildOperations({
        database,
        contract,
        metrics,
        metricsToken: config.metricsToken,
        metricsOff: config.metricsOff,
        issuer: deps.issuer,
        stopping: deps.stopping,
        saturated: overload.saturated,
        attachments: config.attachments ?? loadConfig({ NODE_ENV: 'test' }).attachments,
        webhooks: config.webhooks ?? loadConfig({ NODE_ENV: 'test' }).webhooks,
        blobStore: deps.blobStore,
        unscoped: without.has('owner-scope'),
      }),
      verifier,
      logger,
      validateResponses: deps.validateResponses ?? false,
      validateRequests: !without.has('validator'),
    }),
  );
  app.use(errorHandler(logger));
  return app;
}
