import cluster from 'node:cluster';
import { buildApp } from './app.js';
import type { BlobStore } from './attachments/blob-store.js';
import { blobStoreFor, staleUploadAfterMs } from './attachments/storage.js';
import { sweepAttachments } from './attachments/sweep.js';
import { changePruner } from './changes/prune.js';
import { ownerScope } from './db/owner-scope.js';
import { builtinAuth } from './auth/builtin/issuer.js';
import { withDevSecret } from './auth/dev-secret.js';
import { createTokenVerifier } from './auth/token-verifier.js';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { loadContract } from './http/contract.js';
import { createMetrics } from './http/metrics.js';
import { gracefulShutdown } from './http/graceful-shutdown.js';
import { createHttpServer, listen } from './http/http-server.js';
import { configOrExit, exitOnFailure, reportTracing, startupRefusal } from './entrypoint.js';
import { createLogger, flushLogs, logUncaught, type Logger } from './logger.js';
import { flushTraces } from './telemetry/tracing.js';

/**
 * The Redis client for shared rate-limit counters and concurrency leases. Commands fail at once while it is disconnected
 * (no offline queue), so the limiter lets requests through instead of waiting; it reconnects by
 * itself, and every failure is logged at error.
 */
async function connectRedis(url: string, logger: Logger) {
  // Loaded only when REDIS_URL is set: node-redis costs about 11 MB of memory to load.
  const { createClient } = await import('redis');
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 5000) },
  });
  let reported = false;
  client.on('error', (error: Error) => {
    if (reported) return; // once per outage, not once per reconnect attempt
    reported = true;
    logger.error('redis unavailable; rate limits are not enforced until it is back', { error: error.message });
  });
  client.on('ready', () => {
    if (reported) logger.info('redis is back; rate limits enforced again');
    reported = false;
  });
  // Connected before the server listens, so the limits hold from the first request whenever Redis
  // is reachable (the limiter's scripts load at start); a Redis that is down at start is an outage
  // like any other: requests pass, and the client reconnects on its own.
  const connected = client.connect().then(
    () => true,
    () => false,
  );
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    connected,
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 3000))),
  ]);
  clearTimeout(timer);
  if (!ready) logger.error('redis did not answer at start; rate and concurrency limits are not enforced until it does');
  return client;
}

/**
 * With WEB_CONCURRENCY=N (N > 1, PostgreSQL only) this process forks N workers that share the
 * port, replaces a worker that dies, forwards SIGTERM/SIGINT to all of them and exits 0 once
 * they have all stopped gracefully. A worker that cannot start before any has listened (the
 * database refuses, the port is taken…) stops them all: its one line is printed once, and this
 * process exits 1 rather than starting the same failure again and again.
 */
function supervise(config: Config): void {
  const logger = createLogger(config.log);
  logUncaught(logger);
  let stopping = false;
  let served = false;
  let failed: string | undefined;
  let refused: { pid?: number; code: number | null; signal: string | null } | undefined;
  const fork = () => cluster.fork();
  cluster.on('listening', () => (served = true));
  // A worker whose start failed sends its line here (see exitOnFailure) and exits 1.
  cluster.on('message', (_worker, message: { startupFailure?: unknown }) => {
    if (typeof message?.startupFailure !== 'string') return;
    if (served) process.stderr.write(`${message.startupFailure}\n`);
    else failed ??= message.startupFailure;
  });
  /**
   * Once stopping and every worker is gone, the line or the log, then exit (1 if a worker could not
   * start). Node drops a worker from `cluster.workers` at the later of its 'exit' and its IPC
   * channel's 'disconnect', which come in either order: so this runs on both, and acts on the
   * later. Acting on 'exit' alone missed the last worker whenever its channel closed after it
   * exited; nothing then kept this process alive and it ended with 0 and without a word. The
   * channel closes after the last message on it, so a failed worker's line is in by then.
   */
  let finished = false;
  const finishOnceAllGone = () => {
    if (!stopping || finished || Object.keys(cluster.workers ?? {}).length > 0) return;
    finished = true;
    if (refused === undefined) logger.info('all workers stopped');
    else if (failed !== undefined) process.stderr.write(`${failed}\n`);
    else logger.error('a worker could not start', refused);
    void flushLogs().then(() => process.exit(refused === undefined ? 0 : 1));
  };
  cluster.on('disconnect', finishOnceAllGone);
  cluster.on('exit', (worker, code, signal) => {
    if (!served && !stopping) {
      stopping = true;
      refused = { pid: worker.process.pid, code, signal };
      for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM');
    }
    if (stopping) return finishOnceAllGone();
    logger.error('worker died; starting another', { pid: worker.process.pid, code, signal });
    fork();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down workers', { signal });
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  logger.info('starting workers', { workers: config.webConcurrency, pid: process.pid });
  for (let i = 0; i < config.webConcurrency; i += 1) fork();
}

/** The built-in issuer, with a signing key made now if there is none yet (so the JWKS is never empty). */
async function startBuiltinAuth(config: Config, db: Database['db'], logger: Logger) {
  const builtin = builtinAuth(db, config.auth, logger);
  const { kid } = await builtin.keys.current();
  logger.info('built-in issuer enabled', {
    issuer: config.auth.issuer,
    kid,
    keys_encrypted: config.auth.keyEncryptionSecret !== undefined,
    jwks: '/.well-known/jwks.json',
  });
  return builtin;
}

/**
 * The attachment sweep (what crashed uploads left, bytes of released blobs elsewhere than in
 * PostgreSQL) a little after start and then every ATTACHMENT_SWEEP_INTERVAL_MS. Every process
 * runs it; running it twice at once removes nothing twice.
 */
function sweepEvery(config: Config, database: Database, store: BlobStore, logger: Logger): NodeJS.Timeout {
  const run = () => {
    void sweepAttachments(database.db, store, new Date(Date.now() - staleUploadAfterMs(config.http.requestTimeoutMs)))
      .then((removed) => removed > 0 && logger.info('attachment sweep removed leftovers', { removed }))
      .catch((error: unknown) => logger.warn('attachment sweep failed; it runs again later', { error: String(error) }));
  };
  setTimeout(run, 5_000).unref();
  return setInterval(run, config.attachments.sweepIntervalMs).unref();
}

/** Process entry: config → database → migrations → listen → graceful shutdown on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const config = configOrExit();
  if (config.webConcurrency > 1 && cluster.isPrimary) {
    supervise(config);
    return;
  }
  const logger = createLogger(config.log);
  logUncaught(logger);
  reportTracing(config, logger);
  const { jwt, devSecret } = await withDevSecret(config.jwt);
  if (devSecret) {
    logger.warn(
      'development mode: no JWT_SECRET or JWT_JWKS_URL, accepting HS256 tokens signed with a generated secret',
      {
        file: devSecret.file,
        created: devSecret.created,
        mint: 'npm run --silent token -- --sub alice',
      },
    );
  }

  const database = await openDatabase({ ...config.database, logger });
  const applied = await migrateToLatest(database.db);
  logger.info('database ready', { kind: database.kind, migrations_applied: applied });

  const redis = config.redisUrl === undefined ? undefined : await connectRedis(config.redisUrl, logger);
  const builtin = config.auth.enabled ? await startBuiltinAuth(config, database.db, logger) : undefined;
  const verifier = createTokenVerifier({ ...jwt, builtin: builtin?.verification });
  const server = createHttpServer(config.http, logger);
  const shutdown = gracefulShutdown(server, {
    drainMs: config.shutdownDrainMs,
    timeoutMs: config.shutdownTimeoutMs,
    logger,
  });
  // One owner scope for everything that reaches owners' rows: the blob store and the operations.
  const asOwner = ownerScope(database);
  const blobStore = await blobStoreFor(config.attachments, asOwner);
  const sweep = sweepEvery(config, database, blobStore, logger);
  const metrics = createMetrics(database);
  // Change streams end at the signal; the change history is pruned hourly.
  const closing = new AbortController();
  const pruner = changePruner(database.db, config.changes.retentionDays, logger);
  const app = buildApp({
    config,
    database,
    asOwner,
    logger,
    redis,
    verifier,
    issuer: builtin?.issuer,
    contract: loadContract(),
    stopping: () => shutdown.stopping(),
    shutdown: closing.signal,
    blobStore,
    metrics,
  });
  // With the worker elsewhere, this process still exports the outbox's backlog (webhook_deliveries_pending,
  // webhook_oldest_pending_delivery_age_seconds): it is what shows that no worker is sending. Loaded
  // before listening: between listening and the signal handlers below nothing may wait, or a SIGTERM
  // sent once the server answers could find no handler and kill the process.
  const backlog =
    config.webhooks.worker === 'in-process'
      ? undefined
      : (await import('./webhooks/jobs/backlog.js')).webhookBacklogMetrics({
          db: database.db,
          registry: metrics.registry,
          logger,
        });
  server.on('request', app);
  await listen(server, config.port, config.host);
  const address = server.address();
  if (config.metricsOff)
    logger.warn('GET /metrics is not served: production without METRICS_TOKEN (set one to scrape it)');
  logger.info('listening', {
    port: typeof address === 'object' && address ? address.port : config.port,
    docs: '/docs',
    pid: process.pid,
  });
  // Webhook deliveries, in this process unless WEBHOOK_WORKER=off (then `npm run worker` runs them).
  // Started while the API already serves (the queue's first start on PGlite takes seconds), and
  // awaited by `stop`; a worker that cannot start ends the process, as a failed start would.
  const worker =
    config.webhooks.worker === 'in-process'
      ? import('./webhooks/jobs/worker.js').then(({ startWebhookWorker }) =>
          startWebhookWorker({
            database,
            databaseUrl: config.database.url,
            config: config.webhooks,
            logger,
            registry: metrics.registry,
          }),
        )
      : undefined;
  worker?.then(
    () => logger.info('webhook worker running in this process', { concurrency: config.webhooks.concurrency }),
    async (error: unknown) => {
      // One line for what the operator can fix (the database refused the queue's schema…), else the stack.
      if (startupRefusal(error) !== undefined) await exitOnFailure(error);
      logger.error('webhook worker did not start', {
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
      await flushLogs();
      process.exit(1);
    },
  );

  const stop = async (signal: string) => {
    if (shutdown.stopping()) return;
    const drained = shutdown.shutdown();
    // Open change streams end now, cleanly: their clients reconnect to another process and lose nothing.
    closing.abort();
    logger.info('shutting down', { signal, drain_ms: config.shutdownDrainMs, timeout_ms: config.shutdownTimeoutMs });
    await drained;
    await (
      await worker?.catch(() => undefined)
    )
      ?.stop(config.shutdownTimeoutMs)
      .catch((error: unknown) => logger.warn('webhook worker did not stop cleanly', { error: String(error) }));
    backlog?.stop();
    pruner.stop();
    clearInterval(sweep);
    blobStore.close();
    await database.close();
    await redis?.close().catch(() => undefined);
    logger.info('stopped');
    await Promise.all([flushLogs(), flushTraces()]); // process.exit drops what is still buffered
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch(exitOnFailure);
