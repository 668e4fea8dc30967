import { createHash } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import { sql } from 'kysely';
import { fromKysely, fromPglite, PgBoss, type Job } from 'pg-boss';
import { Counter, type Registry } from 'prom-client';
import type { WebhooksConfig } from '../../config.js';
import type { Database } from '../../db/database.js';
import type { Logger } from '../../logger.js';
import { webhookSender } from '../sender.js';
import { claimSecondsFor, deliveryRunner, type DeliveryJob, type DeliveryOutcome } from './deliver.js';
import { deliveryPump } from './pump.js';

/** The pg-boss queue of delivery attempts, one job per attempt. */
export const DELIVERY_QUEUE = 'webhook-delivery';
/** Deliveries the relay hands to the queue per transaction. */
const RELAY_BATCH = 200;
/** How far ahead the relay queues deliveries (a `task.due` or a retry that is due later waits in the outbox). */
const QUEUE_HORIZON_MINUTES = 60;
/** Response bytes read (then discarded) of a receiver's answer. */
const MAX_RESPONSE_BYTES = 64 * 1024;
/** How often a worker with a free slot looks for a job when the last look found fewer than it asked for. */
const FETCH_POLL_MS = 500;
/** How often a worker deletes the ended deliveries past their retention, and how many per statement. */
const PURGE_EVERY_MS = 3600_000;
const PURGE_BATCH = 5000;

export interface WebhookWorker {
  /** Moves what is due from the outbox to the queue now (the timer does it every `pollMs`); how many it moved. */
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
 * tasks trigger and the API) to pg-boss, and pg-boss workers that run each attempt
 * (deliveryRunner). On PostgreSQL pg-boss has a small pool of its own on `databaseUrl`; on PGlite
 * it shares the embedded database through pg-boss's PGlite adapter, whose statements wait their
 * turn behind the API's transactions.
 *
 * Several workers (processes) can run against one database: the relay claims rows with
 * `FOR UPDATE SKIP LOCKED` and queues them in the same transaction that marks them queued, and
 * pg-boss hands each job to one worker. A worker killed mid-attempt leaves its job active; pg-boss
 * expires it after `timeoutMs` plus a margin and runs it again elsewhere (at-least-once, same
 * `webhook-id`).
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
}): Promise<WebhookWorker> {
  const { database, config, logger } = deps;
  const { db } = database;
  // An attempt running this long was abandoned (its worker died): pg-boss runs it again, by then
  // with the dead worker's claim on the delivery lapsed.
  const expireInSeconds = 2 * claimSecondsFor(config.timeoutMs) + 1;
  const checkEvery = Math.min(60, expireInSeconds);
  const common = { schema: 'pgboss', superviseIntervalSeconds: checkEvery, monitorIntervalSeconds: checkEvery, application_name: 'tasks-api-worker' };
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
    retryLimit: 105_000, retryDelay: 2, retryBackoff: true, retryDelayMax: 300, retentionSeconds: 366 * 86_400, expireInSeconds, deleteAfterSeconds: 3600,
  };
  if ((await boss.getQueue(DELIVERY_QUEUE)) === null) {
    // Another worker may create it at the same moment.
    await boss.createQueue(DELIVERY_QUEUE, queueOptions).catch(async (error: unknown) => {
      if ((await boss.getQueue(DELIVERY_QUEUE)) === null) throw error;
    });
  } else {
    await boss.updateQueue(DELIVERY_QUEUE, queueOptions);
  }

  const sender = webhookSender({ timeoutMs: config.timeoutMs, maxResponseBytes: MAX_RESPONSE_BYTES, allowPrivate: false, allowedAddresses: config.allowedAddresses, lookup: deps.lookup });
  const outcomes = deps.registry && new Counter({
    name: 'webhook_delivery_attempts_total',
    help: 'Webhook delivery attempts by outcome (succeeded, retrying, failed).',
    labelNames: ['outcome'] as const,
    registers: [deps.registry],
  });
  const run = deliveryRunner({ db, send: (url, body, headers) => sender.send(url, body, headers), config, logger });

  const runJob = async (job: Job<DeliveryJob>) => {
    const attempt = { id: job.id, retryCount: job.retryCount }; // settles this claim, not a later one of the same job
    try {
      const outcome: DeliveryOutcome = await run(job.data);
      if (outcome !== 'skipped') outcomes?.inc({ outcome });
      // Before the slot frees: until then the job counts against its endpoint's concurrency, and
      // the next fetch would find that endpoint still busy.
      await boss.complete(DELIVERY_QUEUE, attempt);
    } catch (error) {
      logger.warn('webhook delivery attempt not recorded; the queue runs it again', { delivery_id: job.data.delivery, error: String(error) });
      // Left active if this fails too: pg-boss expires it and runs it again.
      await boss.fail(DELIVERY_QUEUE, attempt, { error: String(error) }).catch(() => undefined);
    }
  };
  const pump = deliveryPump({
    slots: config.concurrency,
    prefetch: config.concurrency,
    pollMs: FETCH_POLL_MS,
    // pg-boss hands out no job of an endpoint with `endpointConcurrency` attempts active in any
    // worker (each job's group is its endpoint): a hanging endpoint holds that many slots at most.
    fetch: (count) => boss.fetch<DeliveryJob>(DELIVERY_QUEUE, { batchSize: count, groupConcurrency: config.endpointConcurrency }),
    run: runJob,
    // Back to the queue at once (as a failed try, run again in 2 s), rather than after their expiry.
    release: async (jobs) => void (await boss.fail(DELIVERY_QUEUE, jobs.map((job) => ({ id: job.id, retryCount: job.retryCount })), { error: 'worker stopping' })),
    onError: (error) => logger.warn('webhook job fetch failed; trying again shortly', { error: String(error) }),
  });

  async function relay(): Promise<number> {
    return db.transaction().execute(async (trx) => {
      const due = await trx
        .selectFrom('webhook_deliveries')
        .select(['id', 'endpoint_id', 'attempts_made', 'retry_base', 'next_attempt_at'])
        .where('status', '=', 'pending')
        .where('queued', '=', false)
        // Only what is due soon: pg-boss deletes a job still waiting after its retention, a task
        // can be due in years, and the queue stays small. Later ones are queued as their time comes.
        .where('next_attempt_at', '<=', sql<Date>`now() + ${sql.lit(`${QUEUE_HORIZON_MINUTES} minutes`)}::interval`)
        .orderBy('next_attempt_at')
        .limit(RELAY_BATCH)
        .forUpdate()
        .skipLocked()
        .execute();
      if (due.length === 0) return 0;
      await boss.insert(
        DELIVERY_QUEUE,
        due.map((row) => ({
          id: attemptJobId(row.id, row.attempts_made + 1, row.retry_base),
          data: { delivery: row.id, attempt: row.attempts_made + 1 } satisfies DeliveryJob,
          startAfter: row.next_attempt_at ?? undefined,
          group: { id: row.endpoint_id },
        })),
        { db: fromKysely(trx) },
      );
      await trx.updateTable('webhook_deliveries').set({ queued: true }).where('id', 'in', due.map((row) => row.id)).execute();
      return due.length;
    });
  }

  /** One batch of the ended deliveries past `retentionDays` deleted; how many. A pending one (a retry, a task.due months ahead) stays until it ends. */
  async function purgeBatch(): Promise<number> {
    const { numDeletedRows } = await db
      .deleteFrom('webhook_deliveries')
      .where('id', 'in', (eb) =>
        eb.selectFrom('webhook_deliveries')
          .select('id')
          .where('status', '<>', 'pending')
          .where('updated_at', '<', sql<Date>`now() - make_interval(days => ${config.retentionDays})`)
          .limit(PURGE_BATCH)
          .forUpdate()
          .skipLocked()) // another worker's purge has those
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
  const tick = () => {
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
            if (purged > 0) logger.info('webhook deliveries past their retention deleted', { deleted: purged, retention_days: config.retentionDays });
            purged = undefined;
          }
        } catch (error) {
          purged = undefined;
          if (!stopped) logger.warn('webhook delivery log purge failed; it runs again in an hour', { error: String(error) });
        }
      }
      if (!stopped) timer = setTimeout(tick, config.pollMs);
    })();
  };
  tick();

  return {
    relay,
    purge,
    async stop(timeoutMs = 10_000) {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      await relaying;
      await pump.stop(timeoutMs);
      await boss.stop({ graceful: true, timeout: timeoutMs, close: true });
      sender.close();
    },
  };
}
