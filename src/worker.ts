import { openDatabase } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { configOrExit, exitOnFailure, reportTracing } from './entrypoint.js';
import { createLogger, flushLogs, logUncaught } from './logger.js';
import { flushTraces } from './telemetry/tracing.js';
import { startWebhookWorker } from './webhooks/jobs/worker.js';

/**
 * `npm run worker`: webhook deliveries without the HTTP API, for scaling them apart from it
 * (run the API with WEBHOOK_WORKER=off, and as many of these as deliveries need). Needs
 * DATABASE_URL: embedded PGlite belongs to the one process that opened it.
 */
async function worker(): Promise<void> {
  const config = configOrExit();
  if (config.database.url === undefined) {
    process.stderr.write(
      'npm run worker needs DATABASE_URL: embedded PGlite lives inside the API process, which runs deliveries itself (WEBHOOK_WORKER=in-process)\n',
    );
    process.exit(1);
  }
  const logger = createLogger(config.log);
  logUncaught(logger);
  reportTracing(config, logger);
  const database = await openDatabase({ ...config.database, logger });
  await migrateToLatest(database.db);
  const running = await startWebhookWorker({
    database,
    databaseUrl: config.database.url,
    config: config.webhooks,
    logger,
  });
  logger.info('webhook worker running', { concurrency: config.webhooks.concurrency, pid: process.pid });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('webhook worker stopping', { signal });
    await running
      .stop(config.shutdownTimeoutMs)
      .catch((error: unknown) => logger.warn('webhook worker did not stop cleanly', { error: String(error) }));
    await database.close();
    logger.info('stopped');
    await Promise.all([flushLogs(), flushTraces()]);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

worker().catch(exitOnFailure);
