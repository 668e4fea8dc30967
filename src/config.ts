import ipaddr from 'ipaddr.js';
/**
 * The only reader of the environment. Everything else receives a typed {@link Config}.
 * Every problem is collected and reported at once, so a bad deployment fails with one message.
 */
export type NodeEnv = 'development' | 'production' | 'test';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface JwtConfig {
  /** HS256 shared secret. */
  secret?: string;
  /** Where asymmetric (EdDSA, ES256, RS256) public keys are published. */
  jwksUrl?: URL;
  issuer?: string;
  audience?: string;
  clockToleranceSeconds: number;
  /**
   * The longest a token may live: one issued (`iat`) longer ago than this, or expiring (`exp`)
   * further ahead, is refused, so a leaked long-lived token cannot work for years.
   */
  maxTokenAgeSeconds: number;
  /** Refuse tokens without `iat` (production), so their age can be checked. */
  requireIssuedAt: boolean;
  /** Set only in development with neither a secret nor a JWKS URL: where the generated secret lives. */
  devSecretFile?: string;
}

/** The built-in issuer (register/login/refresh/logout, keys at /.well-known/jwks.json). */
export interface BuiltinAuthConfig {
  enabled: boolean;
  /** `iss` and `aud` of its tokens; the API's public URL in production. */
  issuer: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** Encrypts the signing keys' private halves in the database (AES-256-GCM). */
  keyEncryptionSecret?: string;
  /** Failed logins allowed before 429 login-throttled (LOGIN_*). */
  loginThrottle: LoginThrottle;
}

/**
 * The built-in issuer's budgets of failed logins: counted per (email, client IP), per email and per
 * client IP over a window of `windowSeconds`, and refused (429, Retry-After) once a key has used its
 * budget within it. Per (email, IP) is the one that stops a guesser without locking the account's
 * owner out elsewhere, which is why the per-email budget must be above it.
 */
export interface LoginThrottle {
  windowSeconds: number;
  maxPerEmailAndIp: number;
  maxPerEmail: number;
  maxPerIp: number;
}

/**
 * 15 minutes; 5 failures per (email, IP), 100 per email (it takes 20 addresses to reach), 50 per
 * IP. The built-in issuer falls back to these when built without a config (tools, tests).
 */
export const DEFAULT_LOGIN_THROTTLE: Readonly<LoginThrottle> = Object.freeze({
  windowSeconds: 15 * 60,
  maxPerEmailAndIp: 5,
  maxPerEmail: 100,
  maxPerIp: 50,
});

/**
 * Load shedding in front of the API's operations (see http/overload.ts). Declared here, not beside
 * the guard, because config.ts imports no module of the app: every layer may read config.
 */
export interface OverloadLimits {
  /** Requests of the API (/api/…) being worked on at once; more wait in the queue. */
  maxInFlight: number;
  /** Requests that may wait for a place; beyond them, 503 at once. */
  maxQueue: number;
  /** The longest a request waits in the queue before it gets 503. */
  maxQueueWaitMs: number;
  /** Mean event-loop delay, in each of the last two samples (500 ms each), above which new requests get 503 at once. */
  maxEventLoopDelayMs: number;
  /** Clients waiting for a database connection at or above which no queued request is let in. */
  maxPoolWaiting: number;
}

/** What one principal may hold at once, and how fast bodies and transfers must move (CAPACITY in the README; see http/capacity.ts). */
export interface CapacityLimits {
  /** A JSON body must be in this long after its headers (CLIENT_BODY_TIMEOUT_MS); else 408 and the connection closes. */
  bodyTimeoutMs: number;
  /** Requests in flight at once for one user (a verified token's `sub`). */
  perUser: number;
  /** Requests in flight at once for one client IP without a valid token. */
  perIp: number;
  /** Attachment uploads in progress at once for one user. */
  uploadsPerUser: number;
  /** Attachment downloads in progress at once for one user. */
  downloadsPerUser: number;
  /** Uploads and downloads in progress at once in this process, everyone's together. */
  maxTransfers: number;
  /** A transfer moving fewer bytes than this per second, averaged over a window, is ended (0: no minimum). */
  transferMinBytesPerSecond: number;
  /** The window of that average (nginx's client_body_timeout / send_timeout, as a rate). */
  transferRateWindowMs: number;
  /** The longest a download may last, however fast it moves (uploads: CLIENT_REQUEST_TIMEOUT_MS). */
  transferMaxMs: number;
  /** Change streams open at once for one user. */
  streamsPerUser: number;
  /** Change streams open at once in this process, everyone's together. */
  maxStreams: number;
}

/** The change history and its live streams (see changes/). */
export interface ChangesConfig {
  /** Days a deleted task's tombstone stays in the feed; a token older than what was pruned gets 410. */
  retentionDays: number;
  /** A heartbeat comment on a quiet stream this often. */
  heartbeatMs: number;
  /** A stream ends after this long (a little less, at random), so clients reconnect: deploys, expired tokens. */
  maxLifetimeMs: number;
  /** The reconnect delay a stream advises (`retry:`). */
  retryMs: number;
  /** How often each process reads the heads of the owners with open streams, to wake them. */
  pollMs: number;
}

export interface Config {
  nodeEnv: NodeEnv;
  port: number;
  host?: string;
  database: {
    url?: string;
    poolMax: number;
    pgliteDir: string;
    /** PostgreSQL's statement_timeout and idle_in_transaction_session_timeout for the app's sessions. */
    statementTimeoutMs: number;
    /** The client-side wait for any reply; above statementTimeoutMs, so the server normally answers first. */
    queryTimeoutMs: number;
    /** Named (server-side prepared) statements on the request path; off behind a pooler that cannot keep them. */
    preparedStatements: boolean;
  };
  jwt: JwtConfig;
  auth: BuiltinAuthConfig;
  /** `noColor`: NO_COLOR is set (https://no-color.org): pretty lines stay plain even on a terminal. */
  log: { level: LogLevel; format: 'json' | 'pretty'; noColor?: boolean };
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  /** A request not answered within this many ms gets 503 problem+json. */
  requestTimeoutMs: number;
  /** Load shedding in front of the API's operations (see overloadGuard). */
  overload: OverloadLimits;
  /** What one principal (user, or client IP without a token) may hold at once, and the deadlines of bodies and transfers (see capacity.ts). */
  capacity: CapacityLimits;
  /** The change feed's retention and the live streams' timing. */
  changes: ChangesConfig;
  /** What one client connection may hold (see createHttpServer). */
  http: {
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    maxConnections: number;
    maxConnectionsPerIp: number;
  };
  /** How long the server keeps accepting after SIGTERM/SIGINT before it stops (ms). */
  shutdownDrainMs: number;
  /** Worker processes sharing the port (node:cluster); 1 runs the server in this process. */
  webConcurrency: number;
  rateLimit: { perMinute: number; authPerMinute: number };
  /** Shared rate-limit counters (redis:// or rediss://); unset, each process counts alone. */
  redisUrl?: string;
  /** Express's `trust proxy`: false (X-Forwarded-For ignored), a hop count, or trusted addresses. */
  trustProxy: boolean | number | string;
  /** When set, GET /metrics needs it as a bearer token. */
  metricsToken?: string;
  /** GET /metrics is not served (404): production without a METRICS_TOKEN. */
  metricsOff: boolean;
  /** Origins a browser may call the API from (`*`: any); empty: none, CORS stays off. */
  corsOrigins: string[];
  attachments: AttachmentsConfig;
  webhooks: WebhooksConfig;
  tracing: TracingConfig;
}

/**
 * OpenTelemetry traces (OTEL_* and TRACING_INCOMING_CONTEXT). The SDK itself reads the rest of the
 * standard variables (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS…).
 */
export interface TracingConfig {
  /** On when an OTLP endpoint is named, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. */
  enabled: boolean;
  /**
   * What an incoming `traceparent` does: `ignore` (every request starts its own trace: a client on
   * the internet cannot join our traces or force them sampled), or `continue` (behind a gateway
   * that traces).
   */
  incoming: 'ignore' | 'continue';
  /** The resource's `service.name` (OTEL_SERVICE_NAME). */
  serviceName: string;
}

/** WEBHOOK_*: how events reach users' endpoints (see src/webhooks). */
export interface WebhooksConfig {
  /** Where deliveries run: in this process (`in-process`), or only in `npm run worker` processes (`off`). */
  worker: 'in-process' | 'off';
  /** Deliveries in flight at once, per worker process. */
  concurrency: number;
  /** Deliveries in flight at once to one endpoint, across every worker: a slow or hanging endpoint holds no more slots than this. */
  endpointConcurrency: number;
  /**
   * Deliveries in flight at once for one owner, all their endpoints together, across every worker:
   * below `concurrency`, so one user's hanging endpoints never take a whole worker.
   */
  ownerConcurrency: number;
  /** Attempts one owner's deliveries may make per minute (bursts of as many); the rest are postponed, never dropped. */
  ownerDeliveriesPerMinute: number;
  /** Timeouts in a row after which an endpoint's circuit opens: it gets no attempt for `circuitOpenSeconds`, then one. */
  circuitTimeouts: number;
  /** How long an endpoint's circuit first stays open; each reopening without an answer in between doubles it, up to an hour. */
  circuitOpenSeconds: number;
  /** The whole of one attempt: connect, send, the answer's headers and its (capped) body. */
  timeoutMs: number;
  /** Seconds before each retry (±20 % jitter); its length is how many retries a delivery gets. */
  retrySchedule: number[];
  /** An endpoint whose deliveries have all failed for this long is disabled. */
  disableAfterHours: number;
  /** How long the previous secret still signs, beside the new one, after a rotation. */
  secretGraceSeconds: number;
  /** Endpoints must be https (production); else http is allowed for localhost only. */
  requireHttps: boolean;
  /** CIDR ranges an endpoint may resolve to although they are private or reserved (development: loopback). */
  allowedAddresses: string[];
  /** How often a worker looks for deliveries to queue (its relay from the outbox to the job queue). */
  pollMs: number;
  /** Days an ended (succeeded or failed) delivery stays in the log before the worker deletes it. */
  retentionDays: number;
}

/**
 * What the server takes unless ATTACHMENT_ALLOWED_TYPES says otherwise: no SVG, HTML, XML or
 * executables. The default of a setting belongs to the config, which imports no feature; the
 * attachments feature reads it from here.
 */
export const DEFAULT_ALLOWED_TYPES = [
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'application/pdf',
  'text/plain',
  'text/csv',
  'text/markdown',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  'application/vnd.oasis.opendocument.text',
  'application/vnd.oasis.opendocument.spreadsheet',
  'application/vnd.oasis.opendocument.presentation',
] as const;

/** Files on tasks: limits, accepted types, and where the bytes live. */
export interface AttachmentsConfig {
  maxBytes: number;
  quotaBytes: number;
  maxPerTask: number;
  allowedTypes: string[];
  /** `postgres` (the default: chunks in the database itself) or `s3` (any S3-compatible store). */
  storage: 'postgres' | 's3';
  s3?: { bucket: string; prefix: string; region: string; endpoint?: string };
  /** How often this process looks for what crashed uploads left behind. */
  sweepIntervalMs: number;
}

/**
 * 32 KiB: the largest valid body of any operation (a task with every field at its maximum, every
 * character sent as a 12-byte `\uXXXX\uXXXX` escape pair) is about 22.7 KB. Validation work grows
 * with the body, so a larger limit only buys room for hostile bodies.
 */
export const DEFAULT_BODY_LIMIT_BYTES = 32 * 1024;

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'INVALID_CONFIGURATION';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

type Env = Record<string, string | undefined>;

/**
 * TracingConfig from the environment, with its problems: what `--import dist/src/telemetry/preload.js`
 * reads before anything else is loaded (loadConfig reports the same problems at start).
 */
export function loadTracingConfig(env: Env = process.env): { tracing: TracingConfig; problems: string[] } {
  const problems: string[] = [];
  const read = (name: string): string | undefined => env[name]?.trim() || undefined;
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const value = read(name) ?? fallback;
    if ((allowed as readonly string[]).includes(value)) return value as T;
    problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
    return fallback;
  };
  return { tracing: tracingConfig(read, oneOf, problems), problems };
}

function tracingConfig(
  read: (name: string) => string | undefined,
  oneOf: <T extends string>(name: string, allowed: readonly T[], fallback: T) => T,
  problems: string[],
): TracingConfig {
  const endpoint = read('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? read('OTEL_EXPORTER_OTLP_ENDPOINT');
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT']) {
    const value = read(name);
    if (value !== undefined && !/^https?:\/\/[^/]/.test(value)) problems.push(`${name} must be an http(s) URL`);
  }
  // The one exporter bundled: OTLP over HTTP with JSON bodies (gRPC and protobuf would add their
  // encoders to every process for no gain at this volume).
  const protocol = read('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? read('OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/json';
  if (protocol !== 'http/json')
    problems.push(`OTEL_EXPORTER_OTLP_PROTOCOL must be http/json, the only OTLP encoding bundled (got "${protocol}")`);
  const exporter = read('OTEL_TRACES_EXPORTER') ?? 'otlp';
  if (exporter !== 'otlp' && exporter !== 'none')
    problems.push(`OTEL_TRACES_EXPORTER must be otlp or none (got "${exporter}")`);
  const disabled = oneOf('OTEL_SDK_DISABLED', ['true', 'false'] as const, 'false') === 'true';
  return {
    enabled: endpoint !== undefined && exporter === 'otlp' && !disabled,
    incoming: oneOf('TRACING_INCOMING_CONTEXT', ['ignore', 'continue'] as const, 'ignore'),
    serviceName: read('OTEL_SERVICE_NAME') ?? 'tasks-api',
  };
}

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === '' ? undefined : value;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const value = read(name) ?? fallback;
    if ((allowed as readonly string[]).includes(value)) return value as T;
    problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
    return fallback;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (/^\d+$/.test(raw) && value >= min && value <= max) return value;
    problems.push(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
    return fallback;
  };
  const url = (name: string, protocols: string[]): URL | undefined => {
    const raw = read(name);
    if (raw === undefined) return undefined;
    try {
      const parsed = new URL(raw);
      if (protocols.includes(parsed.protocol)) return parsed;
      problems.push(`${name} must be a ${protocols.map((p) => p.replace(':', '')).join(' or ')} URL`);
    } catch {
      problems.push(`${name} is not a valid URL`);
    }
    return undefined;
  };
  /** A secret: at least 32 bytes, so it cannot be guessed or brute-forced offline. */
  const secretOf = (name: string): string | undefined => {
    const value = read(name);
    if (value !== undefined && Buffer.byteLength(value) < 32) problems.push(`${name} must be at least 32 bytes long`);
    return value;
  };

  const nodeEnv = oneOf('NODE_ENV', ['development', 'production', 'test'] as const, 'development');
  const databaseUrl = url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const secret = secretOf('JWT_SECRET');
  const jwksUrl = url('JWT_JWKS_URL', ['http:', 'https:']);
  const hasKeys = secret !== undefined || read('JWT_JWKS_URL') !== undefined;
  const builtinAuth =
    oneOf('AUTH_BUILTIN', ['true', 'false'] as const, nodeEnv === 'development' ? 'true' : 'false') === 'true';
  if (nodeEnv === 'production' && !hasKeys && !builtinAuth) {
    problems.push('JWT_SECRET, JWT_JWKS_URL or AUTH_BUILTIN=true must be set when NODE_ENV=production');
  }
  // The owner of a row is the token's `sub` alone; two issuers could both name a subject the same
  // way and share its tasks. Production takes its tokens from one source.
  const issuers = [
    secret !== undefined && 'JWT_SECRET',
    read('JWT_JWKS_URL') !== undefined && 'JWT_JWKS_URL',
    builtinAuth && 'AUTH_BUILTIN=true',
  ].filter(Boolean);
  if (nodeEnv === 'production' && issuers.length > 1) {
    problems.push(
      `${issuers.join(', ')}: one token issuer per deployment in production (owners are identified by "sub" alone, and two issuers could both issue the same one)`,
    );
  }
  const keyEncryptionSecret = secretOf('KEY_ENCRYPTION_SECRET');
  if (nodeEnv === 'production' && builtinAuth && keyEncryptionSecret === undefined) {
    problems.push(
      'KEY_ENCRYPTION_SECRET must be set when AUTH_BUILTIN=true and NODE_ENV=production (the signing keys are stored encrypted with it)',
    );
  }

  const corsEntries = (read('CORS_ORIGINS') ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  const corsOrigins = corsEntries.flatMap((origin) => {
    if (origin === '*') return ['*'];
    try {
      const parsed = new URL(origin);
      if ((parsed.protocol === 'https:' || parsed.protocol === 'http:') && parsed.origin === origin.replace(/\/$/, ''))
        return [parsed.origin];
    } catch {
      // reported below
    }
    problems.push(
      `CORS_ORIGINS must list origins like https://app.example.com (scheme, host and port only) or be *; "${origin}" is not one`,
    );
    return [];
  });
  if (corsEntries.includes('*') && corsEntries.length > 1)
    problems.push('CORS_ORIGINS is either * or a list of origins, not both');

  const poolMax = int('DATABASE_POOL_MAX', 10, 1, 1000);
  const maxInFlight = int('OVERLOAD_MAX_IN_FLIGHT', 64, 1, 100_000);
  // A principal's share: 16, or a quarter of the places at work on a smaller server.
  const principalDefault = Math.max(1, Math.min(16, Math.floor(maxInFlight / 4)));
  const config: Config = {
    nodeEnv,
    port: int('PORT', 3000, 0, 65535),
    host: read('HOST'),
    database: {
      url: databaseUrl ? read('DATABASE_URL') : undefined,
      poolMax,
      pgliteDir: read('PGLITE_DIR') ?? '.data/pglite',
      statementTimeoutMs: int('DATABASE_STATEMENT_TIMEOUT_MS', 10_000, 100, 600_000),
      queryTimeoutMs: int('DATABASE_QUERY_TIMEOUT_MS', 12_000, 200, 600_000),
      preparedStatements: oneOf('DATABASE_PREPARED_STATEMENTS', ['on', 'off'] as const, 'on') === 'on',
    },
    jwt: {
      secret,
      jwksUrl,
      issuer: read('JWT_ISSUER'),
      audience: read('JWT_AUDIENCE'),
      clockToleranceSeconds: int('JWT_CLOCK_TOLERANCE_SECONDS', 30, 0, 300),
      maxTokenAgeSeconds: int('JWT_MAX_TOKEN_AGE_SECONDS', 86_400, 60, 31_536_000),
      requireIssuedAt: nodeEnv === 'production',
      devSecretFile: hasKeys || nodeEnv === 'production' ? undefined : '.data/dev-jwt-secret',
    },
    auth: {
      enabled: builtinAuth,
      issuer: read('AUTH_ISSUER') ?? 'tasks-api',
      accessTokenTtlSeconds: int('AUTH_ACCESS_TOKEN_TTL_SECONDS', 900, 60, 86_400),
      refreshTokenTtlSeconds: int('AUTH_REFRESH_TOKEN_TTL_DAYS', 30, 1, 365) * 86_400,
      keyEncryptionSecret,
      loginThrottle: {
        windowSeconds: int('LOGIN_FAILURE_WINDOW_SECONDS', DEFAULT_LOGIN_THROTTLE.windowSeconds, 60, 86_400),
        maxPerEmailAndIp: int('LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP', DEFAULT_LOGIN_THROTTLE.maxPerEmailAndIp, 1, 1000),
        maxPerEmail: int('LOGIN_MAX_FAILURES_PER_EMAIL', DEFAULT_LOGIN_THROTTLE.maxPerEmail, 1, 1_000_000),
        maxPerIp: int('LOGIN_MAX_FAILURES_PER_IP', DEFAULT_LOGIN_THROTTLE.maxPerIp, 1, 1_000_000),
      },
    },
    log: {
      level: oneOf('LOG_LEVEL', ['error', 'warn', 'info', 'debug'] as const, 'info'),
      format: oneOf('LOG_FORMAT', ['json', 'pretty'] as const, nodeEnv === 'production' ? 'json' : 'pretty'),
      noColor: read('NO_COLOR') !== undefined,
    },
    bodyLimitBytes: int('BODY_LIMIT_BYTES', DEFAULT_BODY_LIMIT_BYTES, 1024, 10 * 1024 * 1024),
    shutdownTimeoutMs: int('SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    shutdownDrainMs: int('SHUTDOWN_DRAIN_MS', 500, 0, 60_000),
    http: {
      headersTimeoutMs: int('CLIENT_HEADERS_TIMEOUT_MS', 10_000, 500, 120_000),
      requestTimeoutMs: int('CLIENT_REQUEST_TIMEOUT_MS', 30_000, 1000, 600_000),
      keepAliveTimeoutMs: int('KEEP_ALIVE_TIMEOUT_MS', 5000, 100, 600_000),
      maxConnections: int('MAX_CONNECTIONS', 1000, 1, 1_000_000),
      // A quarter of them per peer address; off behind a proxy (every connection is the proxy's).
      maxConnectionsPerIp: int(
        'MAX_CONNECTIONS_PER_IP',
        read('TRUST_PROXY') === undefined || read('TRUST_PROXY') === 'false' ? 256 : 0,
        0,
        1_000_000,
      ),
    },
    requestTimeoutMs: int('REQUEST_TIMEOUT_MS', 15_000, 100, 600_000),
    overload: {
      maxInFlight,
      maxQueue: int('OVERLOAD_MAX_QUEUE', 1024, 0, 1_000_000),
      maxQueueWaitMs: int('OVERLOAD_MAX_QUEUE_WAIT_MS', 2000, 1, 600_000),
      maxEventLoopDelayMs: int('OVERLOAD_MAX_EVENT_LOOP_DELAY_MS', 500, 10, 600_000),
      maxPoolWaiting: int('OVERLOAD_MAX_POOL_WAITING', 2 * poolMax, 1, 100_000),
    },
    capacity: {
      bodyTimeoutMs: int('CLIENT_BODY_TIMEOUT_MS', 5000, 100, 600_000),
      perUser: int('CONCURRENCY_PER_USER', principalDefault, 1, 100_000),
      perIp: int('CONCURRENCY_PER_IP', principalDefault, 1, 100_000),
      uploadsPerUser: int('UPLOADS_PER_USER', 2, 1, 10_000),
      downloadsPerUser: int('DOWNLOADS_PER_USER', 4, 1, 10_000),
      maxTransfers: int('TRANSFERS_MAX', 64, 1, 100_000),
      transferMinBytesPerSecond: int('TRANSFER_MIN_BYTES_PER_SECOND', 1024, 0, 1024 ** 3),
      transferRateWindowMs: int('TRANSFER_RATE_WINDOW_MS', 20_000, 500, 600_000),
      transferMaxMs: int('TRANSFER_MAX_MS', 3_600_000, 1000, 86_400_000),
      streamsPerUser: int('STREAMS_PER_USER', 10, 1, 10_000),
      maxStreams: int('STREAMS_MAX', 1000, 1, 100_000),
    },
    changes: {
      retentionDays: int('CHANGES_RETENTION_DAYS', 30, 1, 3650),
      heartbeatMs: int('STREAM_HEARTBEAT_MS', 15_000, 100, 300_000),
      maxLifetimeMs: int('STREAM_MAX_LIFETIME_MS', 900_000, 1000, 86_400_000),
      retryMs: int('STREAM_RETRY_MS', 1000, 0, 600_000),
      pollMs: int('STREAM_POLL_MS', 100, 10, 60_000),
    },
    webConcurrency: int('WEB_CONCURRENCY', 1, 1, 64),
    metricsToken: read('METRICS_TOKEN'),
    metricsOff: nodeEnv === 'production' && read('METRICS_TOKEN') === undefined,
    rateLimit: {
      perMinute: int('RATE_LIMIT_PER_MINUTE', 600, 1, 1_000_000),
      authPerMinute: int('AUTH_RATE_LIMIT_PER_MINUTE', 20, 1, 1_000_000),
    },
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']) ? read('REDIS_URL') : undefined,
    trustProxy: trustProxyOf(read('TRUST_PROXY'), problems),
    corsOrigins,
    attachments: attachmentsConfig(read, int, oneOf, problems),
    webhooks: webhooksConfig(read, int, oneOf, problems, nodeEnv),
    tracing: tracingConfig(read, oneOf, problems),
  };
  if (config.metricsToken !== undefined && config.metricsToken.length < 16)
    problems.push('METRICS_TOKEN must be at least 16 characters long');
  if (config.auth.enabled && config.auth.accessTokenTtlSeconds > config.jwt.maxTokenAgeSeconds) {
    problems.push(
      'AUTH_ACCESS_TOKEN_TTL_SECONDS must not exceed JWT_MAX_TOKEN_AGE_SECONDS: the built-in issuer would sign tokens this server refuses',
    );
  }
  if (config.auth.loginThrottle.maxPerEmail <= config.auth.loginThrottle.maxPerEmailAndIp) {
    problems.push(
      `LOGIN_MAX_FAILURES_PER_EMAIL (${config.auth.loginThrottle.maxPerEmail}) must be above LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP (${config.auth.loginThrottle.maxPerEmailAndIp}): else failing from one address would lock the account's owner out everywhere`,
    );
  }
  if (config.http.headersTimeoutMs > config.http.requestTimeoutMs) {
    problems.push(
      'CLIENT_HEADERS_TIMEOUT_MS must not exceed CLIENT_REQUEST_TIMEOUT_MS (the headers are part of the request)',
    );
  }
  if (config.database.queryTimeoutMs <= config.database.statementTimeoutMs) {
    problems.push(
      'DATABASE_QUERY_TIMEOUT_MS must be above DATABASE_STATEMENT_TIMEOUT_MS: the server ends a slow statement or an abandoned transaction itself, before the client gives up on it',
    );
  }
  // One principal alone must never fill the load-shedding gate: that is what 503 is for.
  for (const [name, cap] of [
    ['CONCURRENCY_PER_USER', config.capacity.perUser],
    ['CONCURRENCY_PER_IP', config.capacity.perIp],
  ] as const) {
    if (cap >= config.overload.maxInFlight && config.overload.maxInFlight > 1)
      problems.push(
        `${name} must be below OVERLOAD_MAX_IN_FLIGHT (${config.overload.maxInFlight}): one principal alone must never fill the server`,
      );
  }
  if (config.webConcurrency > 1 && config.database.url === undefined) {
    problems.push(
      'WEB_CONCURRENCY above 1 needs DATABASE_URL: embedded PGlite lives in one process and cannot be shared by workers',
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * The configuration of an environment that sets nothing but NODE_ENV=test: every default of
 * loadConfig, taken from loadConfig itself, so that each number is written once, there. For code
 * that assembles the app or one of its parts without an environment (tests, tools), which starts
 * from these and overrides what it needs. A fresh object on every call: changing it changes
 * nobody else's.
 */
export function defaultConfig(): Config {
  return loadConfig({ NODE_ENV: 'test' });
}

/** ATTACHMENT_*: limits, types and storage of files on tasks. */
function attachmentsConfig(
  read: (name: string) => string | undefined,
  int: (name: string, fallback: number, min: number, max: number) => number,
  oneOf: <T extends string>(name: string, allowed: readonly T[], fallback: T) => T,
  problems: string[],
): AttachmentsConfig {
  const types = read('ATTACHMENT_ALLOWED_TYPES')
    ?.split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean) ?? [...DEFAULT_ALLOWED_TYPES];
  const badTypes = types.filter((t) => !/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/.test(t));
  if (badTypes.length > 0)
    problems.push(
      `ATTACHMENT_ALLOWED_TYPES must list media types like image/png, comma-separated (not ${badTypes.join(', ')})`,
    );
  const storage = oneOf('ATTACHMENT_STORAGE', ['postgres', 's3'] as const, 'postgres');
  const bucket = read('ATTACHMENT_S3_BUCKET');
  if (storage === 's3' && bucket === undefined)
    problems.push('ATTACHMENT_S3_BUCKET must be set when ATTACHMENT_STORAGE=s3');
  const endpoint = read('ATTACHMENT_S3_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint))
    problems.push('ATTACHMENT_S3_ENDPOINT must be an http(s) URL');
  return {
    maxBytes: int('ATTACHMENT_MAX_BYTES', 10 * 1024 * 1024, 1, 5 * 1024 ** 3),
    quotaBytes: int('ATTACHMENT_QUOTA_BYTES', 1024 ** 3, 0, 1024 ** 5),
    maxPerTask: int('ATTACHMENT_MAX_PER_TASK', 20, 0, 10_000),
    allowedTypes: types,
    storage,
    s3:
      storage === 's3' && bucket !== undefined
        ? {
            bucket,
            prefix: read('ATTACHMENT_S3_PREFIX') ?? 'attachments/',
            region: read('ATTACHMENT_S3_REGION') ?? read('AWS_REGION') ?? 'us-east-1',
            endpoint,
          }
        : undefined,
    sweepIntervalMs: int('ATTACHMENT_SWEEP_INTERVAL_MS', 600_000, 1000, 86_400_000),
  };
}

/** Retries of a webhook delivery: about a day in all. */
const DEFAULT_RETRY_SCHEDULE = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 28_800];

function webhooksConfig(
  read: (name: string) => string | undefined,
  int: (name: string, fallback: number, min: number, max: number) => number,
  oneOf: <T extends string>(name: string, allowed: readonly T[], fallback: T) => T,
  problems: string[],
  nodeEnv: NodeEnv,
): WebhooksConfig {
  const list = (name: string) =>
    read(name)
      ?.split(',')
      .map((entry) => entry.trim())
      .filter(Boolean);
  const schedule = list('WEBHOOK_RETRY_SCHEDULE')?.map(Number) ?? [...DEFAULT_RETRY_SCHEDULE]; // a copy: a caller's change stays its own
  if (schedule.length > 50 || schedule.some((s) => !Number.isInteger(s) || s < 1 || s > 7 * 86_400)) {
    problems.push(
      'WEBHOOK_RETRY_SCHEDULE must list at most 50 delays in whole seconds from 1 to 604800, comma-separated (e.g. 5,30,120)',
    );
  }
  const allowed = list('WEBHOOK_ALLOWED_ADDRESSES') ?? (nodeEnv === 'production' ? [] : ['127.0.0.0/8', '::1/128']);
  const badRanges = allowed.filter((range) => !ipaddr.isValidCIDR(range));
  if (badRanges.length > 0)
    problems.push(
      `WEBHOOK_ALLOWED_ADDRESSES must list CIDR ranges like 10.1.0.0/16, comma-separated (not ${badRanges.join(', ')})`,
    );
  const concurrency = int('WEBHOOK_CONCURRENCY', 8, 1, 256);
  // One owner never fills a worker: 4 of the default 8 slots, and always fewer than there are.
  const ownerConcurrency = int('WEBHOOK_OWNER_CONCURRENCY', Math.max(1, Math.min(4, concurrency - 1)), 1, 255);
  if (concurrency > 1 && ownerConcurrency >= concurrency)
    problems.push(
      `WEBHOOK_OWNER_CONCURRENCY must be below WEBHOOK_CONCURRENCY (${concurrency}), so that one owner never takes every slot of a worker`,
    );
  return {
    worker: oneOf('WEBHOOK_WORKER', ['in-process', 'off'] as const, 'in-process'),
    concurrency,
    endpointConcurrency: int('WEBHOOK_ENDPOINT_CONCURRENCY', 2, 1, 256),
    ownerConcurrency,
    ownerDeliveriesPerMinute: int('WEBHOOK_OWNER_DELIVERIES_PER_MINUTE', 300, 1, 100_000),
    circuitTimeouts: int('WEBHOOK_CIRCUIT_TIMEOUTS', 5, 1, 1000),
    circuitOpenSeconds: int('WEBHOOK_CIRCUIT_OPEN_SECONDS', 60, 1, 3600),
    timeoutMs: int('WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
    retrySchedule: schedule,
    disableAfterHours: int('WEBHOOK_DISABLE_AFTER_HOURS', 120, 1, 8760),
    secretGraceSeconds: int('WEBHOOK_SECRET_GRACE_SECONDS', 86_400, 0, 30 * 86_400),
    requireHttps: nodeEnv === 'production',
    allowedAddresses: allowed,
    pollMs: int('WEBHOOK_POLL_MS', 500, 50, 60_000),
    retentionDays: int('WEBHOOK_DELIVERY_RETENTION_DAYS', 30, 1, 3650),
  };
}

/** TRUST_PROXY: unset or false → false; a hop count; or comma-separated addresses, subnets or loopback/linklocal/uniquelocal. */
function trustProxyOf(raw: string | undefined, problems: string[]): boolean | number | string {
  if (raw === undefined || raw === 'false') return false;
  if (/^\d{1,2}$/.test(raw)) return Number(raw);
  const entries = raw.split(',').map((entry) => entry.trim());
  if (entries.every((entry) => /^(loopback|linklocal|uniquelocal|[0-9a-fA-F.:]+(\/\d{1,3})?)$/.test(entry)))
    return entries.join(',');
  problems.push(`TRUST_PROXY must be false, a number of proxy hops, or proxy addresses/subnets (got "${raw}")`);
  return false;
}
