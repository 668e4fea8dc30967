import { sql, type Kysely } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import type { DB } from '../../db/schema.js';
import type { Logger } from '../../logger.js';

/** How long one reading of the backlog serves scrapes: however many Prometheus servers scrape, one query per this per process. */
export const BACKLOG_CACHE_MS = 5000;
/** PostgreSQL ends the backlog query after this long (it takes milliseconds on an indexed outbox). */
const BACKLOG_STATEMENT_TIMEOUT_MS = 1000;
/**
 * A scrape waits this long at most for the backlog (a pool connection, or on PGlite its turn behind
 * the API's transactions, plus the query); past it the gauges are left out of that scrape.
 */
const BACKLOG_DEADLINE_MS = 2000;

/** The webhook outbox as one query sees it, across every owner. */
export interface WebhookBacklog {
  /** Deliveries with status pending: due, scheduled for a later retry or event, postponed, or admitted to the job queue. */
  pending: number;
  /** Now minus the due time of the oldest pending delivery that is due (its `next_attempt_at`); 0 when none is due. */
  oldestDueAgeSeconds: number;
}

/**
 * The backlog across every owner, in one read-only statement under a short statement timeout. It
 * runs as the connecting role, as the relay does (relay.ts): webhook_deliveries' row-level
 * security gives that role its `maintenance` policy (every row), while a request's role sees one
 * owner's. Each half is answered from a partial index the relay already keeps (migrations
 * 0006/0008): the outbox (`status = 'pending' and not queued`) from webhook_deliveries_outbox_idx
 * on `next_attempt_at` (an index-only scan), the deliveries admitted to the job queue (`status =
 * 'pending' and queued`, few: each owner's and endpoint's caps bound them) from
 * webhook_deliveries_admitted_idx; the ended deliveries, almost all of the table, are never read.
 *
 * The due time is `next_attempt_at` as it stands: the event's time (a `task.due`: the task's due
 * time), the retry's time, a redelivery's time, and for a postponed delivery the time it was
 * postponed to (its endpoint's circuit half-opening, its owner's turn under the rate limit). So a
 * delivery waiting for a later retry, a reminder months ahead, or one held back on purpose is not
 * due and adds no age; the age grows only while due work is not being sent (no worker running,
 * the relay failing, the queue saturated or its jobs lost), and an alert on it means stuck, not
 * scheduled. An admitted delivery stays due from that time until its attempt is recorded: its wait
 * in the job queue and its attempt count. `created_at` would be wrong for retries: a delivery on
 * its fifth retry was created hours ago and is not late.
 */
export async function readWebhookBacklog(db: Kysely<DB>): Promise<WebhookBacklog> {
  return db
    .transaction()
    .setAccessMode('read only')
    .execute(async (trx) => {
      await sql`select set_config('statement_timeout', ${String(BACKLOG_STATEMENT_TIMEOUT_MS)}, true)`.execute(trx);
      const {
        rows: [row],
      } = await sql<{ pending: number; oldest_due_age_seconds: number }>`
        with outbox as (
          select count(*) as n, min(next_attempt_at) as oldest
            from webhook_deliveries
           where status = 'pending' and not queued
        ), admitted as (
          select count(*) as n, min(next_attempt_at) as oldest
            from webhook_deliveries
           where status = 'pending' and queued
        )
        select (outbox.n + admitted.n)::float8 as pending,
               coalesce(greatest(0, extract(epoch from now() - least(outbox.oldest, admitted.oldest)))::float8, 0) as oldest_due_age_seconds
          from outbox, admitted`.execute(trx);
      return { pending: Number(row!.pending), oldestDueAgeSeconds: Number(row!.oldest_due_age_seconds) };
    });
}

/**
 * `webhook_deliveries_pending` and `webhook_oldest_pending_delivery_age_seconds` on `registry`,
 * read at scrape time (prom-client's `collect`) from one backlog query shared by both, kept
 * `cacheMs`, never two at once. A query that fails or takes too long leaves both gauges out of the
 * scrape (no sample, rather than a 0 that would read as "no backlog"), never fails /metrics, and is
 * logged at warn once per streak of failures (and at info when it works again).
 *
 * The backlog is the whole database's: every process that exports it (each API process running
 * the worker in-process) exports the same figure, so alerts take max(), not sum().
 */
export function webhookBacklogMetrics(deps: {
  db: Kysely<DB>;
  registry: Registry;
  logger: Logger;
  cacheMs?: number;
  /** The reading itself (readWebhookBacklog unless a test needs another). */
  read?: (db: Kysely<DB>) => Promise<WebhookBacklog>;
}): { stop(): void } {
  const { db, registry, logger, cacheMs = BACKLOG_CACHE_MS, read = readWebhookBacklog } = deps;
  let stopped = false;
  let failing = false;
  let last: { at: number; backlog: WebhookBacklog | undefined } | undefined;
  let inFlight: Promise<WebhookBacklog> | undefined;

  async function current(): Promise<WebhookBacklog | undefined> {
    if (stopped) return undefined;
    if (last !== undefined && Date.now() - last.at < cacheMs) return last.backlog;
    // A query still running from an earlier scrape (one that gave up waiting for it) is waited for, not repeated.
    inFlight ??= read(db).finally(() => {
      inFlight = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    let backlog: WebhookBacklog | undefined;
    try {
      backlog = await Promise.race([
        inFlight,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${BACKLOG_DEADLINE_MS} ms`)),
            BACKLOG_DEADLINE_MS,
          ).unref();
        }),
      ]);
      if (failing) logger.info('webhook backlog metrics are read again');
      failing = false;
    } catch (error) {
      if (!failing)
        logger.warn('webhook backlog metrics not read; left out of /metrics until the query works again', {
          error: String(error),
        });
      failing = true;
    } finally {
      clearTimeout(timer);
    }
    last = { at: Date.now(), backlog };
    return backlog;
  }

  /** A gauge read from the shared backlog reading at scrape time; left out of the scrape when it cannot be read. */
  const gauge = (name: string, help: string, value: (backlog: WebhookBacklog) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const backlog = await current();
        if (backlog === undefined) this.remove();
        else this.set(value(backlog));
      },
    });
  gauge(
    'webhook_deliveries_pending',
    'Webhook deliveries not yet ended (status pending), across all owners: due, waiting for a retry or a later event, postponed, or in the job queue.',
    (backlog) => backlog.pending,
  );
  gauge(
    'webhook_oldest_pending_delivery_age_seconds',
    'Seconds since the oldest pending webhook delivery that is due became due (its next attempt time; a postponed one counts from the time it was postponed to), across all owners; 0 when none is due.',
    (backlog) => backlog.oldestDueAgeSeconds,
  );

  return {
    stop() {
      stopped = true;
    },
  };
}
