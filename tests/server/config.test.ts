import { describe, expect, it } from '@jest/globals';
import { ConfigError, defaultConfig, loadConfig } from '../../src/config.js';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}

describe('loadConfig', () => {
  it('runs with no configuration at all: PGlite under .data, port 3000, a development secret', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      nodeEnv: 'development',
      port: 3000,
      database: { url: undefined, pgliteDir: '.data/pglite', poolMax: 10 },
      jwt: { devSecretFile: '.data/dev-jwt-secret', clockToleranceSeconds: 30 },
      log: { level: 'info', format: 'pretty' },
      bodyLimitBytes: 32768,
    });
  });

  it('prepares named statements unless DATABASE_PREPARED_STATEMENTS=off, and sizes load shedding by the pool', () => {
    expect(loadConfig({}).database.preparedStatements).toBe(true);
    expect(loadConfig({ DATABASE_PREPARED_STATEMENTS: 'off' }).database.preparedStatements).toBe(false);
    expect(problemsOf({ DATABASE_PREPARED_STATEMENTS: 'no' })).toEqual([
      'DATABASE_PREPARED_STATEMENTS must be one of on, off (got "no")',
    ]);
    expect(loadConfig({}).overload).toEqual({
      maxInFlight: 64,
      maxQueue: 1024,
      maxQueueWaitMs: 2000,
      maxEventLoopDelayMs: 500,
      maxPoolWaiting: 20,
    });
    expect(loadConfig({ DATABASE_POOL_MAX: '30', OVERLOAD_MAX_IN_FLIGHT: '8' }).overload).toMatchObject({
      maxInFlight: 8,
      maxPoolWaiting: 60,
    });
    expect(problemsOf({ OVERLOAD_MAX_IN_FLIGHT: '0' })).toEqual([
      'OVERLOAD_MAX_IN_FLIGHT must be an integer from 1 to 100000 (got "0")',
    ]);
  });

  it('reads the change feed’s retention and the streams’ timing', () => {
    expect(loadConfig({}).changes).toEqual({
      retentionDays: 30,
      heartbeatMs: 15_000,
      maxLifetimeMs: 900_000,
      retryMs: 1000,
      pollMs: 100,
    });
    expect(loadConfig({ STREAM_POLL_MS: '250', STREAM_HEARTBEAT_MS: '5000' }).changes).toMatchObject({
      pollMs: 250,
      heartbeatMs: 5000,
    });
    expect(problemsOf({ STREAM_POLL_MS: '5', CHANGES_RETENTION_DAYS: '0' })).toEqual([
      'CHANGES_RETENTION_DAYS must be an integer from 1 to 3650 (got "0")',
      'STREAM_POLL_MS must be an integer from 10 to 60000 (got "5")',
    ]);
  });

  it('gives each principal a share below the places at work, and refuses a share that would fill them', () => {
    expect(loadConfig({}).capacity).toEqual({
      bodyTimeoutMs: 5000,
      perUser: 16,
      perIp: 16,
      uploadsPerUser: 2,
      downloadsPerUser: 4,
      maxTransfers: 64,
      transferMinBytesPerSecond: 1024,
      transferRateWindowMs: 20_000,
      transferMaxMs: 3_600_000,
      streamsPerUser: 10,
      maxStreams: 1000,
    });
    // A smaller server: a quarter of its places each, unless set.
    expect(loadConfig({ OVERLOAD_MAX_IN_FLIGHT: '8' }).capacity).toMatchObject({ perUser: 2, perIp: 2 });
    expect(loadConfig({ OVERLOAD_MAX_IN_FLIGHT: '8', CONCURRENCY_PER_USER: '7' }).capacity.perUser).toBe(7);
    expect(problemsOf({ CONCURRENCY_PER_USER: '64' })).toEqual([
      'CONCURRENCY_PER_USER must be below OVERLOAD_MAX_IN_FLIGHT (64): one principal alone must never fill the server',
    ]);
    expect(problemsOf({ OVERLOAD_MAX_IN_FLIGHT: '10', CONCURRENCY_PER_IP: '10' })).toEqual([
      'CONCURRENCY_PER_IP must be below OVERLOAD_MAX_IN_FLIGHT (10): one principal alone must never fill the server',
    ]);
    expect(problemsOf({ CLIENT_BODY_TIMEOUT_MS: '50' })).toEqual([
      'CLIENT_BODY_TIMEOUT_MS must be an integer from 100 to 600000 (got "50")',
    ]);
    expect(loadConfig({ TRANSFER_MIN_BYTES_PER_SECOND: '0' }).capacity.transferMinBytesPerSecond).toBe(0);
    // Connections per peer address: off behind a proxy, where every connection is the proxy's.
    expect(loadConfig({}).http.maxConnectionsPerIp).toBe(256);
    expect(loadConfig({ TRUST_PROXY: 'loopback' }).http.maxConnectionsPerIp).toBe(0);
    expect(loadConfig({ TRUST_PROXY: '1', MAX_CONNECTIONS_PER_IP: '50' }).http.maxConnectionsPerIp).toBe(50);
  });

  it('uses the given secret and no development secret once JWT_SECRET is set', () => {
    const config = loadConfig({ JWT_SECRET: 's'.repeat(32), JWT_ISSUER: 'https://id.example', PGLITE_DIR: '/tmp/x' });
    expect(config.jwt).toMatchObject({
      secret: 's'.repeat(32),
      issuer: 'https://id.example',
      devSecretFile: undefined,
    });
    expect(config.database.pgliteDir).toBe('/tmp/x');
  });

  it('refuses production without token keys, naming what is missing', () => {
    expect(problemsOf({ NODE_ENV: 'production' })).toEqual([
      'JWT_SECRET, JWT_JWKS_URL or AUTH_BUILTIN=true must be set when NODE_ENV=production',
    ]);
  });

  it('turns the built-in issuer on by default in development only, and needs a key encryption secret for it in production', () => {
    expect(loadConfig({}).auth).toMatchObject({
      enabled: true,
      issuer: 'tasks-api',
      accessTokenTtlSeconds: 900,
      refreshTokenTtlSeconds: 30 * 86_400,
    });
    expect(loadConfig({ NODE_ENV: 'test' }).auth.enabled).toBe(false);
    expect(problemsOf({ NODE_ENV: 'production', AUTH_BUILTIN: 'true' })).toEqual([
      'KEY_ENCRYPTION_SECRET must be set when AUTH_BUILTIN=true and NODE_ENV=production (the signing keys are stored encrypted with it)',
    ]);
    const config = loadConfig({
      NODE_ENV: 'production',
      AUTH_BUILTIN: 'true',
      AUTH_ISSUER: 'https://tasks.example.com',
      KEY_ENCRYPTION_SECRET: 'k'.repeat(32),
      AUTH_ACCESS_TOKEN_TTL_SECONDS: '300',
      AUTH_REFRESH_TOKEN_TTL_DAYS: '7',
    });
    expect(config.auth).toEqual({
      enabled: true,
      issuer: 'https://tasks.example.com',
      keyEncryptionSecret: 'k'.repeat(32),
      accessTokenTtlSeconds: 300,
      refreshTokenTtlSeconds: 7 * 86_400,
      loginThrottle: { windowSeconds: 900, maxPerEmailAndIp: 5, maxPerEmail: 100, maxPerIp: 50 },
    });
    expect(problemsOf({ AUTH_BUILTIN: 'yes', KEY_ENCRYPTION_SECRET: 'short' })).toEqual([
      'AUTH_BUILTIN must be one of true, false (got "yes")',
      'KEY_ENCRYPTION_SECRET must be at least 32 bytes long',
    ]);
  });

  it('takes tokens from one issuer only in production, so that two cannot share a subject', () => {
    const secrets = { KEY_ENCRYPTION_SECRET: 'k'.repeat(32), JWT_SECRET: 's'.repeat(32) };
    expect(problemsOf({ NODE_ENV: 'production', AUTH_BUILTIN: 'true', ...secrets })).toEqual([
      'JWT_SECRET, AUTH_BUILTIN=true: one token issuer per deployment in production (owners are identified by "sub" alone, and two issuers could both issue the same one)',
    ]);
    expect(
      problemsOf({ NODE_ENV: 'production', JWT_SECRET: 's'.repeat(32), JWT_JWKS_URL: 'https://id.example/jwks' }),
    ).toHaveLength(1);
    // Development keeps its generated HS256 secret next to the built-in issuer.
    expect(loadConfig({ AUTH_BUILTIN: 'true', JWT_SECRET: 's'.repeat(32) }).auth.enabled).toBe(true);
  });

  it('starts production with a JWKS URL only, logging JSON', () => {
    const config = loadConfig({ NODE_ENV: 'production', JWT_JWKS_URL: 'https://id.example/api/auth/jwks' });
    expect(config.jwt.jwksUrl?.href).toBe('https://id.example/api/auth/jwks');
    expect(config.log.format).toBe('json');
  });

  it('serves /metrics in production only with METRICS_TOKEN; in development it is public', () => {
    const production = { NODE_ENV: 'production', JWT_JWKS_URL: 'https://id.example/api/auth/jwks' };
    expect(loadConfig(production).metricsOff).toBe(true);
    expect(loadConfig({ ...production, METRICS_TOKEN: 'scrape-me-please-0123' }).metricsOff).toBe(false);
    expect(loadConfig({}).metricsOff).toBe(false);
  });

  it('lists every bad variable at once', () => {
    expect(
      problemsOf({
        NODE_ENV: 'staging',
        PORT: 'eighty',
        DATABASE_URL: 'mysql://db/x',
        JWT_JWKS_URL: 'ftp://keys',
        JWT_SECRET: 'short',
        LOG_LEVEL: 'verbose',
      }),
    ).toEqual([
      'NODE_ENV must be one of development, production, test (got "staging")',
      'DATABASE_URL must be a postgres or postgresql URL',
      'JWT_SECRET must be at least 32 bytes long',
      'JWT_JWKS_URL must be a http or https URL',
      'PORT must be an integer from 0 to 65535 (got "eighty")',
      'LOG_LEVEL must be one of error, warn, info, debug (got "verbose")',
    ]);
  });

  it('reads CORS_ORIGINS as an allow-list of origins, or *; none by default', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://localhost:5173/' }).corsOrigins).toEqual([
      'https://app.example.com',
      'http://localhost:5173',
    ]);
    expect(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*']);
    expect(problemsOf({ CORS_ORIGINS: 'https://app.example.com/login, ftp://x.example, *, app.example.com' })).toEqual([
      'CORS_ORIGINS must list origins like https://app.example.com (scheme, host and port only) or be *; "https://app.example.com/login" is not one',
      'CORS_ORIGINS must list origins like https://app.example.com (scheme, host and port only) or be *; "ftp://x.example" is not one',
      'CORS_ORIGINS must list origins like https://app.example.com (scheme, host and port only) or be *; "app.example.com" is not one',
      'CORS_ORIGINS is either * or a list of origins, not both',
    ]);
  });

  it('refuses WEB_CONCURRENCY above 1 without a PostgreSQL server', () => {
    expect(problemsOf({ WEB_CONCURRENCY: '4' })).toEqual([
      'WEB_CONCURRENCY above 1 needs DATABASE_URL: embedded PGlite lives in one process and cannot be shared by workers',
    ]);
    expect(loadConfig({ WEB_CONCURRENCY: '4', DATABASE_URL: 'postgres://db.example/tasks' }).webConcurrency).toBe(4);
    expect(problemsOf({ WEB_CONCURRENCY: 'lots' })).toEqual([
      'WEB_CONCURRENCY must be an integer from 1 to 64 (got "lots")',
    ]);
  });

  it('reads the rate limits, REDIS_URL and TRUST_PROXY, refusing what they cannot mean', () => {
    expect(loadConfig({})).toMatchObject({
      rateLimit: { perMinute: 600, authPerMinute: 20 },
      redisUrl: undefined,
      trustProxy: false,
    });
    expect(
      loadConfig({ RATE_LIMIT_PER_MINUTE: '100', REDIS_URL: 'redis://127.0.0.1:6379', TRUST_PROXY: '1' }),
    ).toMatchObject({
      rateLimit: { perMinute: 100, authPerMinute: 20 },
      redisUrl: 'redis://127.0.0.1:6379',
      trustProxy: 1,
    });
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback,10.0.0.0/8');
    expect(problemsOf({ RATE_LIMIT_PER_MINUTE: '0', REDIS_URL: 'http://cache', TRUST_PROXY: 'everyone' })).toEqual([
      'RATE_LIMIT_PER_MINUTE must be an integer from 1 to 1000000 (got "0")',
      'REDIS_URL must be a redis or rediss URL',
      'TRUST_PROXY must be false, a number of proxy hops, or proxy addresses/subnets (got "everyone")',
    ]);
  });

  it('reads the database timeouts and keeps the client-side one above the server-side one', () => {
    expect(loadConfig({}).database).toMatchObject({ statementTimeoutMs: 10_000, queryTimeoutMs: 12_000 });
    expect(
      loadConfig({ DATABASE_STATEMENT_TIMEOUT_MS: '3000', DATABASE_QUERY_TIMEOUT_MS: '4000' }).database,
    ).toMatchObject({ statementTimeoutMs: 3000, queryTimeoutMs: 4000 });
    expect(problemsOf({ DATABASE_STATEMENT_TIMEOUT_MS: '12000' })).toEqual([
      'DATABASE_QUERY_TIMEOUT_MS must be above DATABASE_STATEMENT_TIMEOUT_MS: the server ends a slow statement or an abandoned transaction itself, before the client gives up on it',
    ]);
  });

  it('reads the webhook settings: loopback allowed outside production only, schedules and ranges checked', () => {
    expect(loadConfig({}).webhooks).toEqual({
      worker: 'in-process',
      concurrency: 8,
      endpointConcurrency: 2,
      timeoutMs: 10_000,
      retrySchedule: [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 28_800],
      disableAfterHours: 120,
      secretGraceSeconds: 86_400,
      requireHttps: false,
      allowedAddresses: ['127.0.0.0/8', '::1/128'],
      pollMs: 500,
      retentionDays: 30,
      ownerConcurrency: 4,
      ownerDeliveriesPerMinute: 300,
      circuitTimeouts: 5,
      circuitOpenSeconds: 60,
    });
    expect(
      loadConfig({ WEBHOOK_ENDPOINT_CONCURRENCY: '1', WEBHOOK_DELIVERY_RETENTION_DAYS: '7' }).webhooks,
    ).toMatchObject({ endpointConcurrency: 1, retentionDays: 7 });
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }).webhooks).toMatchObject({
      requireHttps: true,
      allowedAddresses: [],
    });
    expect(
      loadConfig({ WEBHOOK_RETRY_SCHEDULE: '1, 2,3', WEBHOOK_ALLOWED_ADDRESSES: '10.1.0.0/16', WEBHOOK_WORKER: 'off' })
        .webhooks,
    ).toMatchObject({
      retrySchedule: [1, 2, 3],
      allowedAddresses: ['10.1.0.0/16'],
      worker: 'off',
    });
    expect(
      problemsOf({
        WEBHOOK_RETRY_SCHEDULE: '5,soon',
        WEBHOOK_ALLOWED_ADDRESSES: '999.1.1.1/8,10.0.0.1',
        WEBHOOK_WORKER: 'elsewhere',
      }),
    ).toEqual([
      'WEBHOOK_RETRY_SCHEDULE must list at most 50 delays in whole seconds from 1 to 604800, comma-separated (e.g. 5,30,120)',
      'WEBHOOK_ALLOWED_ADDRESSES must list CIDR ranges like 10.1.0.0/16, comma-separated (not 999.1.1.1/8, 10.0.0.1)',
      'WEBHOOK_WORKER must be one of in-process, off (got "elsewhere")',
    ]);
  });

  it('turns tracing on with an OTLP endpoint only, and refuses what the bundled exporter cannot do', () => {
    expect(loadConfig({}).tracing).toEqual({ enabled: false, incoming: 'ignore', serviceName: 'tasks-api' });
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SERVICE_NAME: 'tasks-eu' };
    expect(loadConfig(endpoint).tracing).toEqual({ enabled: true, incoming: 'ignore', serviceName: 'tasks-eu' });
    expect(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://otel.example/v1/traces' }).tracing.enabled).toBe(
      true,
    );
    expect(loadConfig({ ...endpoint, OTEL_SDK_DISABLED: 'true' }).tracing.enabled).toBe(false);
    expect(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }).tracing.enabled).toBe(false);
    expect(loadConfig({ ...endpoint, TRACING_INCOMING_CONTEXT: 'continue' }).tracing.incoming).toBe('continue');
    expect(
      problemsOf({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4317',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_TRACES_EXPORTER: 'zipkin',
        TRACING_INCOMING_CONTEXT: 'trust',
      }),
    ).toEqual([
      'OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL',
      'OTEL_EXPORTER_OTLP_PROTOCOL must be http/json, the only OTLP encoding bundled (got "grpc")',
      'OTEL_TRACES_EXPORTER must be otlp or none (got "zipkin")',
      'TRACING_INCOMING_CONTEXT must be one of ignore, continue (got "trust")',
    ]);
  });

  it('refuses a DATABASE_URL that is not a URL', () => {
    expect(problemsOf({ DATABASE_URL: 'not a url' })).toEqual(['DATABASE_URL is not a valid URL']);
  });
});

describe('defaultConfig', () => {
  it('is what loadConfig reads from an environment with NODE_ENV=test alone, a fresh copy each time', () => {
    const defaults = defaultConfig();
    expect(defaults).toEqual(loadConfig({ NODE_ENV: 'test' }));
    expect(defaults).toMatchObject({
      nodeEnv: 'test',
      requestTimeoutMs: 15_000,
      bodyLimitBytes: 32768,
      overload: { maxInFlight: 64 },
      webhooks: { requireHttps: false },
    });
    const pristine = structuredClone(defaults);
    defaults.webhooks.retrySchedule.push(1);
    defaults.attachments.allowedTypes.push('text/html');
    defaults.overload.maxInFlight = 1;
    expect(defaultConfig()).toEqual(pristine);
  });
});
