import { createHash } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import { sql } from 'kysely';
import { fromKysely, fromPglite, PgBoss, type JobWithMetadata } from 'pg-boss';
import { Counter, type Registry } from 'prom-client';
import type { WebhooksConfig } from '../../config.js';
import type { Database } from '../../db/database.js';
import type { Logger } from '../../logger.js';
import { webhookSender } from '../sender.js';
import { webhookBacklogMetrics } from './backlog.js';
import { claimSecondsFor, deliveryRunner, type DeliveryJob, type DeliveryOutcome } from './deliver.js';
import { deliveryPump } from './pump.js';
import { admitDue } from './relay.js';

/** The pg-boss queue of delivery attempts, one job per attempt. */
export const DELIVERY_QUEUE = 'webhook-delivery';
/** Deliveries the relay hands to the queue per transaction. */
const RELAY_BATCH = 200;
/** How soon after an attempt ends the relay runs (those ending meanwhile share the run): the owner may have room for the next. */
const RELAY_AFTER_ATTEMPT_MS = 10;
/** Response bytes read (then discarded) of a receiver's answer. */
const MAX_RESPONSE_BYTES = 64 * 1024;
/** How often a worker with a free slot looks for a job when the last look found fewer than it asked for. */
const FETCH_POLL_MS = 500;
/** How often a worker deletes the ended deliveries past their retention, and how many per statement. */
const PURGE_EVERY_MS = 3600_000;
const PURGE_BATCH = 5000;

export interface WebhookWorker {
  /**
   * Moves what is due and within its owner's and endpoint's caps from the outbox to the queue now
   * (the timer does it every `pollMs`, and soon after every attempt); how many it moved (0 when
   * another worker's relay was running).
   */
  relay(): Promise<number>;
  /** Deletes the deliveries that ended more than `retentionDays` ago now (the timer does it hourly); how many it deleted. */
  purge(): Promise<number>;
  /** Stops taking work, lets attempts in flight finish (up to `timeoutMs`), and closes the queue. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * A pg-boss job id for one attempt of one delivery in one round (a redelivery starts a round):
 * the same attempt always gets the same id, so queueing it twice queues it once (pg-boss inserts
 * ignore a conflicting id), while a redelivery of a delivery still waiting for a retry gets a job
 * of its own that runs now (the waiting one then finds its attempt recorded and does nothing).
 */
export function attemptJobId(delivery: string, attempt: number, round: number): string {
  const h = createHash('sha256').update(`${delivery}:${attempt}:${round}`).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * The webhook worker: a relay from the outbox (pending deliveries not yet queued, written by the
 * tasks trigger and the API) to pg-boss, which admits what is due within each owner's and each
 * endpoint's caps, the owner's rate and the endpoint's circuit (admitDue), and pg-boss workers
 * that run each attempt (deliveryRunner). On PostgreSQL pg-boss has a small pool of its own on
 * `databaseUrl`; on PGlite it shares the embedded database through pg-boss's PGlite adapter, whose
 * statements wait their turn behind the API's transactions.
 *
 * Several workers (processes) can run against one database: one relay at a time admits (an
 * advisory lock; the others skip that turn) and queues what it admits in the same transaction that
 * marks it queued, so the caps hold across workers exactly, and pg-boss hands each job to one
 * worker. A worker killed mid-attempt leaves its job active; pg-boss expires it after `timeoutMs`
 * plus a margin and runs it again elsewhere (at-least-once, same `webhook-id`).
 */
export async function startWebhookWorker(deps: {
  database: Database;
  /** PostgreSQL's URL (pg-boss's own pool); unused on PGlite. */
  databaseUrl?: string;
  config: WebhooksConfig;
  logger: Logger;
  registry?: Registry;
  /** DNS resolution for outbound requests (tests resolve names to chosen addresses with it). */
  lookup?: LookupFunction;
  /** How long one reading of the backlog serves scrapes (BACKLOG_CACHE_MS; tests shorten it). */
  backlogCacheMs?: number;
}): Promise<WebhookWorker> {
  const { database, config, logger } = deps;
  const { db } = database;
  // An attempt running this long was abandoned (its worker died): pg-boss runs it again, by then
  // with the dead worker's claim on the delivery lapsed.
  const expireInSeconds = 2 * claimSecondsFor(config.timeoutMs) + 1;
  const checkEvery = Math.min(60, expireInSeconds);
  const common = {
    schema: 'pgboss',
    superviseIntervalSeconds: checkEvery,
    monitorIntervalSeconds: checkEvery,
    application_name: 'tasks-api-worker',
    // pg-boss traces its own polling (a trace per fetch, twice a second per process) when an SDK
    // is registered: noise. A delivery's trace is the change's (deliver.ts), through the outbox.
    openTelemetry: { enabled: false },
  };
  const open = () => {
    const boss = database.pglite
      ? new PgBoss({ db: fromPglite(database.pglite), backend: 'pglite', ...common })
      : new PgBoss({ connectionString: deps.databaseUrl, max: 3, ...common });
    boss.on('error', (error: Error) => logger.error('job queue error', { error: error.message }));
    return boss;
  };
  // Processes starting together on a new database race to create pg-boss's schema, and the loser
  // fails (a duplicate schema name; its own lock does not hold through a transaction pooler): it
  // starts again, and then finds the schema there.
  let boss = open();
  for (let attempt = 1; ; attempt++) {
    try {
      await boss.start();
      break;
    } catch (error) {
      if (attempt >= 5) throw error;
      logger.warn('job queue did not start; trying again', { attempt, error: String(error) });
      await boss.stop({ graceful: false, close: true }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      boss = open();
    }
  }
  // A job fails only when its attempt could not be recorded (the database failing) or its worker
  // died. It is retried with backoff, every 5 minutes at most, for as long as it takes (a year):
  // a job pg-boss gave up on would leave its delivery pending and marked queued, with nothing left
  // to run it (the relay queues only what is not queued), so neither the retries nor the wait in
  // the queue (retention) may run out first. A completed job is kept an hour, not pg-boss's 7 days:
  // the delivery log is the record, and at a thousand events a second a week of finished jobs
  // would be most of the database.
  const queueOptions = {
    retryLimit: 105_000,
    retryDelay: 2,
    retryBackoff: true,
    retryDelayMax: 300,
    retentionSeconds: 366 * 86_400,
    expireInSeconds,
    deleteAfterSeconds: 3600,
  };
  if ((await boss.getQueue(DELIVERY_QUEUE)) === null) {
    // Another worker may create it at the same moment.
    await boss.createQueue(DELIVERY_QUEUE, queueOptions).catch(async (error: unknown) => {
      if ((await boss.getQueue(DELIVERY_QUEUE)) === null) throw error;
    });
  } else {
    await boss.updateQueue(DELIVERY_QUEUE, queueOptions);
  }

  const sender = webhookSender({
    timeoutMs: config.timeoutMs,
    maxResponseBytes: MAX_RESPONSE_BYTES,
    allowPrivate: false,
    allowedAddresses: config.allowedAddresses,
    lookup: deps.lookup,
  });
  const outcomes =
    deps.registry &&
    new Counter({
      name: 'webhook_delivery_attempts_total',
      help: 'Webhook delivery attempts by outcome (succeeded, retrying, failed).',
      labelNames: ['outcome'] as const,
      registers: [deps.registry],
    });
  const postponements =
    deps.registry &&
    new Counter({
      name: 'webhook_delivery_postponements_total',
      help: 'Webhook deliveries whose next attempt was put off, by reason (rate_limited: their owner is over WEBHOOK_OWNER_DELIVERIES_PER_MINUTE; circuit_open: their endpoint kept timing out).',
      labelNames: ['reason'] as const,
      registers: [deps.registry],
    });
  const circuitOpens =
    deps.registry &&
    new Counter({
      name: 'webhook_endpoint_circuit_opens_total',
      help: "Times an endpoint's circuit opened after WEBHOOK_CIRCUIT_TIMEOUTS timeouts in a row.",
      registers: [deps.registry],
    });
  // The backlog (pending deliveries, the oldest due one's age), read from the outbox at scrape time.
  const backlog =
    deps.registry && webhookBacklogMetrics({ db, registry: deps.registry, logger, cacheMs: deps.backlogCacheMs });
  const run = deliveryRunner({
    db,
    send: (url, body, headers) => sender.send(url, body, headers),
    config,
    logger,
    onCircuitOpen: () => circuitOpens?.inc(),
  });

  const runJob = async (job: JobWithMetadata<DeliveryJob>) => {
    const attempt = { id: job.id, retryCount: job.retryCount }; // settles this claim, not a later one of the same job
    try {
      const outcome: DeliveryOutcome = await run(job.data);
      if (outcome === 'postponed') postponements?.inc({ reason: 'circuit_open' });
      else if (outcome !== 'skipped') outcomes?.inc({ outcome });
      await boss.complete(DELIVERY_QUEUE, attempt);
      // The attempt is recorded: its owner and endpoint have room for the next one now.
      relaySoon();
    } catch (error) {
      logger.warn('webhook delivery attempt not recorded; the queue runs it again', {
        delivery_id: job.data.delivery,
        error: String(error),
      });
      // Left active if this fails too: pg-boss expires it and runs it again.
      await boss.fail(DELIVERY_QUEUE, attempt, { error: String(error) }).catch(() => undefined);
    }
  };
  const pump = deliveryPump({
    slots: config.concurrency,
    prefetch: config.concurrency,
    pollMs: FETCH_POLL_MS,
    // No group concurrency: what is in the queue was admitted within its owner's and endpoint's
    // caps (admitDue), so every job fetched may run. The fetch order, priority then age, serves
    // owners in turn (each job's priority is minus its place among its owner's admitted jobs).
    fetch: (count) => boss.fetch<DeliveryJob>(DELIVERY_QUEUE, { batchSize: count, includeMetadata: true }),
    run: runJob,
    // Back to the queue as they were, for any worker to fetch now, rather than after their expiry
    // or as a failed try (fail() would count a retry and hold each one back 2 s, then 4, 8…): each
    // is deleted under this worker's claim (fenced: one whose claim lapsed is someone else's now)
    // and queued again under its own id, data and priority, in one transaction. (pg-boss 12 has a
    // restore() that does this in place, on its internal Manager only, not on PgBoss.)
    release: (jobs) =>
      db.transaction().execute(async (trx) => {
        await boss.deleteJob(
          DELIVERY_QUEUE,
          jobs.map((job) => ({ id: job.id, retryCount: job.retryCount })),
          { db: fromKysely(trx) },
        );
        // A conflicting id (a job not deleted: no longer this worker's) is skipped by the insert.
        await boss.insert(
          DELIVERY_QUEUE,
          jobs.map((job) => ({ id: job.id, data: job.data, priority: job.priority })),
          { db: fromKysely(trx) },
        );
      }),
    onError: (error) =>
      logger.warn('webhook job fetch or hand-back failed; trying again shortly', { error: String(error) }),
  });

  async function relay(): Promise<number> {
    const { admitted, postponed } = await db.transaction().execute(async (trx) => {
      const result = await admitDue(trx, config, RELAY_BATCH);
      if (result.admitted === undefined || result.admitted.length === 0) return result;
      await boss.insert(
        DELIVERY_QUEUE,
        result.admitted.map((row) => ({
          id: attemptJobId(row.id, row.attempts_made + 1, row.retry_base),
          data: { delivery: row.id, attempt: row.attempts_made + 1 } satisfies DeliveryJob,
          priority: 1 - row.slot,
        })),
        { db: fromKysely(trx) },
      );
      return result;
    });
    for (const [reason, count] of Object.entries(postponed)) if (count > 0) postponements?.inc({ reason }, count);
    if (admitted !== undefined && admitted.length > 0) pump.wake();
    return admitted?.length ?? 0;
  }

  /**
   * One batch of the ended deliveries past `retentionDays` deleted; how many. A pending one (a
   * retry, a task.due months ahead) stays until it ends. The owners' rate allowances unused for an
   * hour go too (a missing one is a full one).
   */
  async function purgeBatch(): Promise<number> {
    await db
      .deleteFrom('webhook_owner_rates')
      .where('spent_until', '<', sql<Date>`now() - interval '1 hour'`)
      .execute();
    const { numDeletedRows } = await db
      .deleteFrom('webhook_deliveries')
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('webhook_deliveries')
          .select('id')
          .where('status', '<>', 'pending')
          .where('updated_at', '<', sql<Date>`now() - make_interval(days => ${config.retentionDays})`)
          .limit(PURGE_BATCH)
          .forUpdate()
          .skipLocked(),
      ) // another worker's purge has those
      .executeTakeFirst();
    return Number(numDeletedRows);
  }
  async function purge(): Promise<number> {
    let deleted = 0;
    for (let batch = PURGE_BATCH; batch === PURGE_BATCH; deleted += batch) batch = await purgeBatch();
    return deleted;
  }

  // Each tick relays what is due, then, once an hour and until none is left, deletes one batch of
  // expired deliveries: a large first purge never holds the relay up for long.
  let stopped = false;
  let relaying: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let lastPurge = 0;
  let purged: number | undefined; // deleted so far in the purge under way
  let ticking = false;
  let nextTickAt = 0;
  let soon = false; // an attempt ended during this tick: the next one comes at once
  const schedule = (ms: number) => {
    clearTimeout(timer);
    nextTickAt = Date.now() + ms;
    timer = setTimeout(tick, ms);
  };
  const tick = () => {
    ticking = true;
    soon = false;
    relaying = (async () => {
      try {
        while (!stopped && (await relay()) === RELAY_BATCH);
      } catch (error) {
        if (!stopped) logger.warn('webhook relay failed; it runs again shortly', { error: String(error) });
      }
      if (!stopped && (purged !== undefined || Date.now() - lastPurge >= PURGE_EVERY_MS)) {
        lastPurge = Date.now();
        try {
          const batch = await purgeBatch();
          purged = (purged ?? 0) + batch;
          if (batch < PURGE_BATCH) {
            if (purged > 0)
              logger.info('webhook deliveries past their retention deleted', {
                deleted: purged,
                retention_days: config.retentionDays,
              });
            purged = undefined;
          }
        } catch (error) {
          purged = undefined;
          if (!stopped)
            logger.warn('webhook delivery log purge failed; it runs again in an hour', { error: String(error) });
        }
      }
      ticking = false;
      if (!stopped) schedule(soon ? RELAY_AFTER_ATTEMPT_MS : config.pollMs);
    })();
  };
  /** A relay soon after an attempt ended, rather than at the next poll: one for all the attempts ending meanwhile. */
  function relaySoon(): void {
    if (stopped) return;
    if (ticking) soon = true;
    else if (nextTickAt > Date.now() + RELAY_AFTER_ATTEMPT_MS) schedule(RELAY_AFTER_ATTEMPT_MS);
  }
  tick();

  return {
    relay,
    purge,
    async stop(timeoutMs = 10_000) {
      if (stopped) return;
      stopped = true;
      backlog?.stop();
      clearTimeout(timer);
      await relaying;
      await pump.stop(timeoutMs);
      await boss.stop({ graceful: true, timeout: timeoutMs, close: true });
      sender.close();
    },
  };
}
