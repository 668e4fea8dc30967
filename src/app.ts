import cors from 'cors';
import express, { type ErrorRequestHandler, type Express, type RequestHandler, type Response } from 'express';
import type { BuiltinIssuer } from './auth/builtin/issuer.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import type { BlobStore } from './attachments/blob-store.js';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { ownerScope, type OwnerScope } from './db/owner-scope.js';
import { accessLog } from './http/access-log.js';
import { capacityGuard, memoryConcurrency, redisConcurrency, requestKinds } from './http/capacity.js';
import { patternWordsOf, type Contract } from './http/contract.js';
import { errorHandler } from './http/error-handler.js';
import { requireHost } from './http/http-server.js';
import { securityHeaders } from './http/security-headers.js';
import { createMetrics, type Metrics } from './http/metrics.js';
import { overloadGuard } from './http/overload.js';
import { ServiceUnavailable } from './errors/problem.js';
import { contractValidator, operationsRouter } from './http/openapi.js';
import { rateLimits, type RedisCommands } from './http/rate-limit.js';
import { requestContext } from './http/request-context.js';
import type { Logger } from './logger.js';
import { buildOperations } from './operations.js';
import { currentContext, failed, inContext, recording, startSpan, tracingOn, withSpan } from './telemetry/tracing.js';

export interface AppDeps {
  config: Pick<
    Config,
    | 'bodyLimitBytes'
    | 'corsOrigins'
    | 'rateLimit'
    | 'requestTimeoutMs'
    | 'attachments'
    | 'overload'
    | 'capacity'
    | 'webhooks'
    | 'changes'
  > &
    Partial<Pick<Config, 'metricsToken' | 'metricsOff' | 'trustProxy'>>;
  /** Where attachments' bytes live (ATTACHMENT_STORAGE=s3); PostgreSQL itself when not given. */
  blobStore?: BlobStore;
  /** Shared rate-limit counters (a connected node-redis client), when REDIS_URL is set. */
  redis?: RedisCommands;
  /** Rate-limit key prefix in Redis (tests isolate themselves with it). */
  rateLimitPrefix?: string;
  database: Database;
  /** The owner scope the operations reach owners' rows through; `ownerScope(database)` when not given. */
  asOwner?: OwnerScope;
  logger: Logger;
  verifier: TokenVerifier;
  /** The built-in issuer, when AUTH_BUILTIN is on; its operations answer 404 without it. */
  issuer?: BuiltinIssuer;
  contract: Contract;
  /** The process's metrics, when something besides the app adds to them (the webhook worker); the app's own otherwise. */
  metrics?: Metrics;
  /** True once the process is shutting down: readiness then answers 503 so load balancers stop sending. */
  stopping?: () => boolean;
  /** Aborted when the process begins to shut down: open change streams end (clients reconnect elsewhere). */
  shutdown?: AbortSignal;
}

/** The stages of the app, in the order a request meets them (see appStages). */
export type AppStageName =
  | 'request-context'
  | 'access-log'
  | 'metrics'
  | 'security-headers'
  | 'host-header'
  | 'rate-limit'
  | 'capacity'
  | 'request-timeout'
  | 'validator'
  | 'operations'
  | 'errors';

/** One stage of the app: its name and the middleware that does its work, in order. */
export interface AppStage {
  name: AppStageName;
  handlers: (RequestHandler | ErrorRequestHandler)[];
}

/**
 * Headers a browser client may read from our responses: every one the API sends that is not
 * CORS-safelisted (Cache-Control, Content-Language, Content-Length, Content-Type, Expires,
 * Last-Modified, Pragma are), so a page can follow Location and Link, send back an ETag, honour
 * Retry-After, read a 401's challenge, a 405's Allow and a download's name and range.
 */
const EXPOSED_HEADERS = [
  'Location',
  'ETag',
  'Link',
  'X-Request-Id',
  'Retry-After',
  'Idempotent-Replayed',
  'RateLimit',
  'RateLimit-Policy',
  'WWW-Authenticate',
  'Allow',
  'Content-Disposition',
  'Content-Range',
  'Accept-Ranges',
];
/** Request headers the contract uses, for CORS preflights (Content-Disposition names a raw upload; Range and If-Range resume a download; Last-Event-ID a change stream). */
const ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'If-Match',
  'If-None-Match',
  'Idempotency-Key',
  'X-Request-Id',
  'Content-Disposition',
  'Range',
  'If-Range',
  'Last-Event-ID',
];

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
 * The stages of the HTTP application, in the order a request meets them: request id → access log
 * → metrics → security headers / CORS → Host required (HTTP/1.1) → rate limits → per-principal
 * concurrency → JSON body (size-limited, deadline) → load shedding (or, for uploads and downloads,
 * the transfer pool) → request timeout → OpenAPI validator (with the bearer security handler) →
 * operation handlers → problem+json errors. Builds every part the stages share (the metrics, the load-shedding gate,
 * the operations) and no app: assembleApp puts the stages on one.
 * Does no I/O; everything it needs arrives in `deps`.
 */
export function appStages(deps: AppDeps): AppStage[] {
  const { config, database, logger, verifier, contract } = deps;
  const metrics = deps.metrics ?? createMetrics(database);
  const context = requestContext();
  const log = accessLog(logger);
  // Security headers and CORS before load shedding: a preflight is answered without queueing,
  // and a shed request's 503 carries Access-Control-Allow-Origin, so a browser can read it and
  // its Retry-After instead of seeing a network error.
  const headers =
    config.corsOrigins.length > 0 ? [securityHeaders(), corsPolicy(config.corsOrigins)] : [securityHeaders()];
  const overload = overloadGuard(config.overload, {
    poolWaiting: () => database.pool?.waitingCount ?? 0,
    registry: metrics.registry,
  });
  // Rate limits first: a principal over its budget costs a counter, nothing more. The token is
  // verified there once, and the capacity guard reuses that verification.
  const limits = rateLimits({
    perMinute: config.rateLimit.perMinute,
    authPerMinute: config.rateLimit.authPerMinute,
    redis: deps.redis,
    prefix: deps.rateLimitPrefix,
    verifier,
    logger,
  });
  // Per-principal caps, the JSON body (read within its deadline, holding no place), then the
  // load-shedding gate; transfers go to their own pool instead of the gate.
  const capacity = capacityGuard(config.capacity, {
    store: deps.redis
      ? redisConcurrency(deps.redis, logger, deps.rateLimitPrefix && `${deps.rateLimitPrefix}cc:`)
      : memoryConcurrency(),
    kindOf: requestKinds(contract.spec),
    verifier,
    registry: metrics.registry,
    bodyLimitBytes: config.bodyLimitBytes,
    admit: overload.middleware,
  });
  const timeout = requestTimeout(config.requestTimeoutMs);
  const operations = operationsRouter(
    contract.spec,
    buildOperations({
      database,
      asOwner: deps.asOwner ?? ownerScope(database),
      contract,
      metrics,
      metricsToken: config.metricsToken,
      metricsOff: config.metricsOff,
      issuer: deps.issuer,
      stopping: deps.stopping,
      saturated: () => overload.saturated(),
      attachments: config.attachments,
      webhooks: config.webhooks,
      blobStore: deps.blobStore,
      changes: config.changes,
      shutdown: deps.shutdown ?? new AbortController().signal,
      logger,
    }),
  );
  const validator = contractValidator({ spec: contract.spec, verifier, logger });
  return [
    { name: 'request-context', handlers: [context] },
    { name: 'access-log', handlers: [log] },
    { name: 'metrics', handlers: [metrics.middleware] },
    { name: 'security-headers', handlers: headers },
    { name: 'host-header', handlers: [requireHost] },
    { name: 'rate-limit', handlers: limits },
    { name: 'capacity', handlers: capacity.middleware },
    { name: 'request-timeout', handlers: [timeout] },
    { name: 'validator', handlers: validator },
    { name: 'operations', handlers: [operations] },
    { name: 'errors', handlers: [errorHandler(logger, patternWordsOf(contract.spec))] },
  ];
}

/**
 * An Express app running `stages` in their order, with the settings every app of ours has: no
 * X-Powered-By (a response names no framework), no automatic ETag (the operations set their own,
 * from the row's version), and `trust proxy` as configured (TRUST_PROXY; off when not given).
 */
export function assembleApp(stages: readonly AppStage[], settings: { trustProxy?: Config['trustProxy'] }): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', settings.trustProxy ?? false);
  app.set('etag', false);
  for (const stage of stages) app.use((tracingOn() ? traced(stage) : stage).handlers);
  return app;
}

/**
 * The stages that get a span: those that wait or decide (verify the token, count against a limit,
 * queue for a place, validate, run the operation). The others take microseconds and would only
 * add spans to every trace.
 */
const TRACED_STAGES = new Set<AppStageName>(['rate-limit', 'capacity', 'validator', 'operations']);

/** The stage span still open for a response, ended if the response ends inside its stage (see traced). */
const openStage = new WeakMap<Response, () => void>();

/**
 * `stage` run in a span of its own (`stage rate-limit`, a child of the request's server span),
 * ended when the stage hands the request on or the response ends within it; what the stage does
 * (token verification, statements) is its children. Written by hand: OpenTelemetry's Express
 * instrumentation makes a span per middleware function, named by the function (ours are
 * anonymous, the validator's are six), and names routes in Express's form.
 */
function traced(stage: AppStage): AppStage {
  if (!TRACED_STAGES.has(stage.name)) return stage;
  const handlers = stage.handlers as RequestHandler[];
  const run: RequestHandler = (req, res, next) => {
    const parent = currentContext();
    // A request its trace does not sample gets no stage spans (they would not be recorded either).
    const span = recording() ? startSpan(`stage ${stage.name}`) : undefined;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      span?.end();
    };
    if (span !== undefined) {
      if (!openStage.has(res)) res.once('close', () => openStage.get(res)?.());
      openStage.set(res, end);
    }
    let next_ = 0;
    const step = (error?: unknown): void => {
      if (error || next_ === handlers.length) {
        if (span !== undefined && error && error !== 'route' && error !== 'router') failed(span, error);
        end();
        return inContext(parent, () => next(error));
      }
      const handler = handlers[next_++]!;
      withSpan(span, () => {
        try {
          const result: unknown = handler(req, res, step);
          if (result instanceof Promise) result.catch((rejected: unknown) => step(rejected ?? new Error('Rejected')));
        } catch (thrown) {
          step(thrown);
        }
      });
    };
    step();
  };
  return { name: stage.name, handlers: [run] };
}

/** The whole HTTP application: every stage of appStages, in order. */
export function buildApp(deps: AppDeps): Express {
  return assembleApp(appStages(deps), deps.config);
}
