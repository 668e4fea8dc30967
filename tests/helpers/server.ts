import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { sql } from 'kysely';
import { SignJWT, type JWTPayload } from 'jose';
import { createTasksClient, type TasksClient } from '../../packages/client/src/index.js';
import { buildApp } from '../../src/app.js';
import type { BlobStore } from '../../src/attachments/blob-store.js';
import { defaultConfig, type AttachmentsConfig, type ChangesConfig, type WebhooksConfig } from '../../src/config.js';
import { startWebhookWorker, type WebhookWorker } from '../../src/webhooks/jobs/worker.js';
import { createMetrics } from '../../src/http/metrics.js';
import type { LookupFunction } from 'node:net';
import { createHttpServer } from '../../src/http/http-server.js';
import type { CapacityLimits, OverloadLimits } from '../../src/config.js';
import type { RedisCommands } from '../../src/http/rate-limit.js';
import { builtinAuth } from '../../src/auth/builtin/issuer.js';
import type { ScryptParameters } from '../../src/auth/builtin/passwords.js';
import type { SigningKeys } from '../../src/auth/builtin/signing-keys.js';
import { createTokenVerifier, type VerifierOptions } from '../../src/auth/token-verifier.js';
import { openDatabase, type Database, type DatabaseOptions } from '../../src/db/database.js';
import { loadContract, type Contract } from '../../src/http/contract.js';
import { captureLogs } from './logs.js';
import { watchResponses, type ResponseMismatch } from './contract-responses.js';

export const TEST_ISSUER = 'https://issuer.tasks-api.test';
/**
 * The test servers' scrypt cost: 1 MiB and a few milliseconds per hash instead of production's
 * 32 MiB and 0.3 s of a core (SCRYPT). The suite registers and logs in hundreds of times; the tests
 * of the work factor itself (tests/auth/builtin-issuer.test.ts) ask for SCRYPT.
 */
export const TEST_SCRYPT: ScryptParameters = { logN: 10, r: 8, p: 1 };
/** `iss` of the built-in issuer's tokens in tests. */
export const BUILTIN_ISSUER = 'https://api.tasks-api.test';

/**
 * A real database: the PostgreSQL server at TEST_DATABASE_URL when set (with named statements
 * unless TEST_DATABASE_PREPARED_STATEMENTS=off, as behind an older PgBouncer), else a fresh
 * in-memory PGlite. Both are already migrated (templates.ts): PGlite starts from a copy of the
 * migrated template, and every PostgreSQL database the tests use is TEST_DATABASE_URL's or a copy
 * of its template (`scratchDatabase`).
 */
export async function testDatabase(
  url = process.env.TEST_DATABASE_URL,
  options: Partial<DatabaseOptions> = {},
): Promise<Database> {
  if (url) {
    const preparedStatements = process.env.TEST_DATABASE_PREPARED_STATEMENTS !== 'off';
    return openDatabase({ url, poolMax: 5, preparedStatements, ...options });
  }
  return openDatabase({
    pgliteDir: 'memory://',
    pgliteDump: await pgliteTemplate(),
    pgliteSettings: TEST_PGLITE_SETTINGS,
    // Compiled once per jest worker (environment.js).
    pgliteWasmModule: (globalThis as { __pgliteWasm?: DatabaseOptions['pgliteWasmModule'] }).__pgliteWasm,
    ...options,
  });
}

/**
 * PGlite's memory for a test server: 8 MB of shared buffers instead of its default 128 MB, which
 * it sets up at every start (0.45 s of CPU of the 1.1 s a start took). A test database holds a
 * few MB, and its files are in memory anyway.
 */
const TEST_PGLITE_SETTINGS = { shared_buffers: '8MB' };

/**
 * The template's bytes as a Blob that reads as a plain copy of them. Node's own Blob copied the
 * (then 40 MB) template in about 0.2 s of CPU when made and again when read, and PGlite reads it at
 * every test server's start: this one holds the bytes it was given and answers every read from them.
 */
class TemplateBlob extends Blob {
  readonly #bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    super([]);
    this.#bytes = bytes;
    Object.defineProperty(this, 'size', { value: bytes.byteLength });
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    return Promise.resolve(this.#bytes.slice().buffer);
  }
  override text(): Promise<string> {
    return Promise.resolve(new TextDecoder().decode(this.#bytes));
  }
  override slice(start?: number, end?: number, type?: string): Blob {
    return new Blob([this.#bytes.subarray(start, end)], { type });
  }
  override stream(): ReturnType<Blob['stream']> {
    return new Blob([this.#bytes]).stream();
  }
}

/** The migrated PGlite data directory global-setup.ts dumped; read once per test file. */
let template: Promise<Blob> | undefined;
function pgliteTemplate(): Promise<Blob> {
  const file = process.env.TEST_PGLITE_TEMPLATE;
  if (!file)
    throw new Error('TEST_PGLITE_TEMPLATE is not set: run the tests through jest (its globalSetup makes the template)');
  template ??= readFile(file).then((bytes) => new TemplateBlob(bytes));
  return template;
}

/**
 * A database of its own for a test that changes what other tests share (the signing keys, the job
 * queue): a fresh PostgreSQL database next to TEST_DATABASE_URL's, a copy of the migrated template
 * (or `empty`, for the migrations' own tests), dropped by `drop`; with PGlite every server has a
 * fresh one anyway, so there is nothing to make.
 */
export async function scratchDatabase({ empty = false } = {}): Promise<{ url?: string; drop(): Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) return { url: undefined, drop: async () => {} };
  const name = `tasks_scratch_${randomBytes(6).toString('hex')}`;
  const admin = await openDatabase({ url: base, poolMax: 1 });
  const template = process.env.TEST_DATABASE_TEMPLATE;
  if (!empty && !template)
    throw new Error(
      'TEST_DATABASE_TEMPLATE is not set: run the tests through jest (its globalSetup makes the template)',
    );
  await (
    empty ? sql`create database ${sql.id(name)}` : sql`create database ${sql.id(name)} template ${sql.id(template!)}`
  ).execute(admin.db);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    async drop() {
      await sql`drop database ${sql.id(name)} with (force)`.execute(admin.db);
      await admin.close();
    },
  };
}

export interface TestServer {
  url: string;
  /** The Express app behind `url`. */
  app: Express;
  /** The built-in issuer's signing keys, when it is enabled. */
  keys?: SigningKeys;
  secret: string;
  database: Database;
  /**
   * The PostgreSQL database the server runs on; undefined on PGlite. `shared` is true for
   * TEST_DATABASE_URL's, which every test file running at the same time uses too.
   */
  postgres?: { url: string; shared: boolean };
  /** The webhook delivery worker, when the test asked for one. */
  worker?: WebhookWorker;
  /** Every log line the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /**
   * Responses that disagree with the contract (see contract-responses.ts): a header it does not
   * declare for their operation and status, or a required one missing; an undocumented status; a
   * JSON body that breaks its schema. `close()` fails the test file when there are any.
   */
  mismatches: ResponseMismatch[];
  /** The generated typed client, authenticated with `token` when given. */
  client(token?: string): TasksClient;
  /** A real HS256 token for `sub` (a fresh random user when omitted), signed with the server's secret. */
  tokenFor(sub?: string, claims?: JWTPayload, options?: { expiresIn?: number | string }): Promise<string>;
  close(): Promise<void>;
}

/** The bundled contract, read once per test file: the app only reads it, and so does `watchResponses`. */
let contract: Contract | undefined;

/** A unique subject, so every test works on its own user and never needs truncation. */
export const newUser = (): string => `user-${randomUUID()}`;

/**
 * The real app on a real HTTP server on port 0, with a real database and real signed tokens; every
 * response it sends is checked against the contract (`mismatches`), and the file fails if one
 * disagrees.
 */
export async function startServer(
  options: {
    jwt?: Partial<VerifierOptions>;
    corsOrigins?: string[];
    metricsToken?: string;
    /** GET /metrics not served, as in production without a token. */
    metricsOff?: boolean;
    /** Rate limits: generous by default so that only the tests about them ever hit one. */
    rateLimit?: { perMinute: number; authPerMinute: number };
    redis?: RedisCommands;
    rateLimitPrefix?: string;
    trustProxy?: boolean | number | string;
    /** A PostgreSQL URL other than TEST_DATABASE_URL (the fault tests go through a proxy). */
    databaseUrl?: string;
    /**
     * On PostgreSQL, a database of the server's own (a copy of the template, dropped at close)
     * instead of TEST_DATABASE_URL's, which the test files running alongside share: for a test
     * that changes what they share (signing keys, the job queue, fixed ids) or locks a whole
     * table. Such a lock stalls every other file's writes, and with a transaction of theirs held
     * open the two wait on each other until a statement timeout ends one (a 503 in a test that
     * never asked for it). With PGlite every server has a database of its own anyway.
     */
    ownDatabase?: boolean;
    /** Pool size and timeouts of the server's PostgreSQL pool (the fault tests shorten them). */
    databaseOptions?: Pick<
      DatabaseOptions,
      'poolMax' | 'statementTimeoutMs' | 'idleInTransactionTimeoutMs' | 'queryTimeoutMs'
    >;
    requestTimeoutMs?: number;
    /**
     * Turn on the built-in issuer (AUTH_BUILTIN), optionally with KEY_ENCRYPTION_SECRET; its
     * passwords hashed at TEST_SCRYPT's cost unless `passwordHashing` says otherwise.
     */
    builtinAuth?: boolean | { keyEncryptionSecret?: string; passwordHashing?: ScryptParameters };
    /** Attachment limits other than the defaults (the tests of limits make them small). */
    attachments?: Partial<AttachmentsConfig>;
    /** Where attachments' bytes go (an S3 store in its tests); PostgreSQL when not given. */
    blobStore?: BlobStore;
    /** Load-shedding limits other than the defaults (its tests make them tiny). */
    overload?: Partial<OverloadLimits>;
    /** Per-principal caps, body deadline and transfer limits; generous by default so that only the tests about them ever hit one. */
    capacity?: Partial<CapacityLimits>;
    /** Node's limit on receiving a whole request (CLIENT_REQUEST_TIMEOUT_MS), checked every second as in production. */
    clientRequestTimeoutMs?: number;
    /** Change-stream timing and retention other than the defaults (its tests shorten heartbeats and lifetimes). */
    changes?: Partial<ChangesConfig>;
    /**
     * Webhook settings other than the test defaults; `runWorker: true` runs the delivery worker in
     * this process (as WEBHOOK_WORKER=in-process does), `lookup` resolves its outbound names.
     */
    webhooks?: Partial<Omit<WebhooksConfig, 'worker'>> & {
      runWorker?: boolean;
      lookup?: LookupFunction;
      backlogCacheMs?: number;
    };
  } = {},
): Promise<TestServer> {
  const secret = randomBytes(32).toString('base64url');
  const { logger, lines: logs } = captureLogs();
  const own = options.ownDatabase && !options.databaseUrl ? await scratchDatabase() : undefined;
  const databaseUrl = options.databaseUrl ?? own?.url ?? process.env.TEST_DATABASE_URL;
  const database = await testDatabase(databaseUrl, { ...options.databaseOptions, logger });
  // The built-in issuer as main.ts builds it, with the production token lifetimes.
  const builtin = options.builtinAuth
    ? builtinAuth(
        database.db,
        {
          issuer: BUILTIN_ISSUER,
          accessTokenTtlSeconds: 900,
          refreshTokenTtlSeconds: 30 * 86_400,
          passwordHashing: TEST_SCRYPT,
          ...(typeof options.builtinAuth === 'object' ? options.builtinAuth : {}),
        },
        logger,
      )
    : undefined;
  const verifier = createTokenVerifier({
    secret,
    issuer: TEST_ISSUER,
    clockToleranceSeconds: 5,
    builtin: builtin?.verification,
    ...options.jwt,
  });
  const defaults = defaultConfig();
  const webhooks: WebhooksConfig = { ...defaults.webhooks, ...options.webhooks };
  const metrics = createMetrics(database);
  contract ??= loadContract();
  const shutdown = new AbortController();
  const app = buildApp({
    metrics,
    config: {
      bodyLimitBytes: defaults.bodyLimitBytes,
      corsOrigins: options.corsOrigins ?? [],
      metricsToken: options.metricsToken,
      metricsOff: options.metricsOff,
      rateLimit: options.rateLimit ?? { perMinute: 100_000, authPerMinute: 100_000 },
      trustProxy: options.trustProxy,
      requestTimeoutMs: options.requestTimeoutMs ?? defaults.requestTimeoutMs,
      attachments: { ...defaults.attachments, ...options.attachments },
      // Load shedding as configured, but never for event-loop delay unless a test asks: jest runs
      // test files side by side, and embedded PGlite's synchronous work stalls the loop of the
      // very process whose requests it would then shed.
      overload: { ...defaults.overload, maxEventLoopDelayMs: 600_000, ...options.overload },
      capacity: {
        ...defaults.capacity,
        perUser: 10_000,
        perIp: 10_000,
        uploadsPerUser: 10_000,
        downloadsPerUser: 10_000,
        maxTransfers: 10_000,
        streamsPerUser: 10_000,
        maxStreams: 10_000,
        ...options.capacity,
      },
      changes: { ...defaults.changes, ...options.changes },
      webhooks,
    },
    shutdown: shutdown.signal,
    blobStore: options.blobStore,
    redis: options.redis,
    rateLimitPrefix: options.rateLimitPrefix,
    database,
    logger,
    verifier,
    issuer: builtin?.issuer,
    contract,
  });
  const server: Server =
    options.clientRequestTimeoutMs === undefined
      ? createServer(app)
      : createHttpServer({
          headersTimeoutMs: options.clientRequestTimeoutMs,
          requestTimeoutMs: options.clientRequestTimeoutMs,
          keepAliveTimeoutMs: 5000,
          maxConnections: 1000,
          maxConnectionsPerIp: 0,
        }).on('request', app);
  const mismatches = watchResponses(server, contract.spec);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const worker = options.webhooks?.runWorker
    ? await startWebhookWorker({
        database,
        databaseUrl,
        config: webhooks,
        logger,
        lookup: options.webhooks.lookup,
        backlogCacheMs: options.webhooks.backlogCacheMs,
        registry: metrics.registry,
      })
    : undefined;

  return {
    url,
    app,
    worker,
    keys: builtin?.keys,
    secret,
    database,
    postgres: databaseUrl ? { url: databaseUrl, shared: databaseUrl === process.env.TEST_DATABASE_URL } : undefined,
    logs,
    mismatches,
    // The package's client without its automatic Idempotency-Key: the tests say when a request carries one.
    client: (token) => createTasksClient({ baseUrl: url, token, idempotency: false }),
    async tokenFor(sub = newUser(), claims = {}, { expiresIn = '10m' } = {}) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(sub)
        .setIssuer(TEST_ISSUER)
        .setIssuedAt()
        .setExpirationTime(expiresIn)
        .sign(new TextEncoder().encode(secret));
    },
    async close() {
      // Open change streams end first, as on SIGTERM: their last bytes are written before the sockets go.
      shutdown.abort();
      await new Promise((resolve) => setImmediate(resolve));
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await worker?.stop(2000);
      await database.close();
      await own?.drop();
      if (mismatches.length > 0) {
        const lines = mismatches.map(
          (m) =>
            `  ${m.request} ${m.status}:${m.undeclared.length > 0 ? ` not declared ${m.undeclared.join(', ')}` : ''}${m.missing.length > 0 ? ` missing ${m.missing.join(', ')}` : ''}${m.body === undefined ? '' : ` ${m.body}`}`,
        );
        throw new Error(`responses that disagree with the contract:\n${lines.join('\n')}`);
      }
    },
  };
}
