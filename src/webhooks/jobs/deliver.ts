import { sql, type Kysely } from 'kysely';
import type { WebhooksConfig } from '../../config.js';
import type { DB, StoredAttempt } from '../../db/schema.js';
import type { Logger } from '../../logger.js';
import { isRetryable, type SendResult } from '../sender.js';
import { signatureHeaders } from '../signing.js';

/** The longest a `Retry-After` may push a retry back (a receiver asking for more gets this). */
const MAX_RETRY_AFTER_SECONDS = 6 * 3600;
/** Attempts kept per delivery (the oldest go first); the contract's maxItems. */
const KEPT_ATTEMPTS = 100;

/**
 * How long a delivery stays claimed by an attempt: its timeout and room to record it. The queue
 * must run an abandoned job again only after that (see `startWebhookWorker`), or the rerun would
 * find the dead worker's claim and do nothing.
 */
export const claimSecondsFor = (timeoutMs: number) => Math.ceil(timeoutMs / 1000) + 2;

export interface DeliveryJob {
  delivery: string;
  /** Which attempt of the delivery this job is (1 for the first); a job for an attempt already recorded does nothing. */
  attempt: number;
}

export type Send = (url: string, body: string, headers: Record<string, string>) => Promise<SendResult>;

/** What a delivery job did, for metrics and tests. */
export type DeliveryOutcome = 'succeeded' | 'retrying' | 'failed' | 'skipped';

/**
 * Runs one attempt of one delivery: signs the stored payload (Standard Webhooks, with the previous
 * secret too during a rotation's grace period), sends it, and records the attempt in one
 * transaction with what follows: done, a retry at the schedule's next delay (or later if the
 * receiver's Retry-After asks), or failed for good. The endpoint's health follows: any success
 * clears `failing_since`; an endpoint failing for longer than `disableAfterHours` is disabled with
 * the reason. Runs as the connecting role, across owners.
 *
 * A job for an attempt that is already recorded (its worker crashed after recording, or the job
 * was queued twice) does nothing; one whose worker crashed before recording runs the attempt again,
 * with the same `webhook-id`: deliveries are at least once.
 */
export function deliveryRunner(deps: { db: Kysely<DB>; send: Send; config: Pick<WebhooksConfig, 'retrySchedule' | 'disableAfterHours' | 'timeoutMs'>; logger: Logger; random?: () => number }) {
  const { db, send, config, logger } = deps;
  const random = deps.random ?? Math.random;
  const claimSeconds = claimSecondsFor(config.timeoutMs);

  function retryDelayMs(attemptInRound: number, result: SendResult): number {
    const base = config.retrySchedule[attemptInRound - 1]! * 1000;
    const jittered = base * (0.8 + 0.4 * random());
    const asked = result.retryAfterSeconds === undefined ? 0 : Math.min(result.retryAfterSeconds, MAX_RETRY_AFTER_SECONDS) * 1000;
    return Math.round(Math.max(jittered, asked));
  }

  return async function run({ delivery, attempt }: DeliveryJob): Promise<DeliveryOutcome> {
    // Claimed for the attempt's length before anything is sent: another job for this delivery
    // (a redelivery beside a scheduled retry, or one pg-boss ran again because this worker was
    // slow) finds it claimed and does nothing. A worker that dies mid-attempt leaves a claim
    // that lapses before pg-boss runs its job again.
    const row = await db
      .updateTable('webhook_deliveries as d')
      .from('webhook_endpoints as e')
      .set({ claimed_until: sql`now() + make_interval(secs => ${claimSeconds})` })
      .whereRef('e.id', '=', 'd.endpoint_id')
      .where('d.id', '=', delivery)
      .where('d.status', '=', 'pending')
      .where('d.attempts_made', '<', attempt)
      .where((eb) => eb.or([eb('d.claimed_until', 'is', null), eb('d.claimed_until', '<', sql<Date>`now()`)]))
      .returning(['d.event_id', 'd.payload', 'd.retry_base', 'd.endpoint_id', 'e.url', 'e.enabled', 'e.secret', 'e.previous_secret', 'e.previous_secret_expires_at'])
      .executeTakeFirst();
    if (row === undefined) return 'skipped';

    const started = new Date();
    let result: SendResult;
    if (!row.enabled) {
      result = { ok: false, durationMs: 0, error: 'not sent: the endpoint is disabled', refused: true };
    } else {
      const body = JSON.stringify(row.payload);
      const graceful = row.previous_secret !== null && row.previous_secret_expires_at !== null && row.previous_secret_expires_at > started;
      const secrets = graceful ? [row.secret, row.previous_secret!] : [row.secret];
      result = await send(row.url, body, signatureHeaders({ id: row.event_id, timestamp: started, body, secrets }));
    }

    const attemptInRound = attempt - row.retry_base;
    const retry = !result.ok && isRetryable(result) && attemptInRound <= config.retrySchedule.length;
    const outcome: DeliveryOutcome = result.ok ? 'succeeded' : retry ? 'retrying' : 'failed';
    const entry: StoredAttempt = {
      attempt,
      at: started.toISOString(),
      status_code: result.statusCode ?? null,
      duration_ms: Math.round(result.durationMs),
      error: result.error === undefined ? null : result.error.slice(0, 500),
    };
    const recorded = await db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('webhook_deliveries')
        .set({
          attempts: sql`(case when jsonb_array_length(attempts) >= ${KEPT_ATTEMPTS} then attempts - 0 else attempts end) || ${JSON.stringify([entry])}::jsonb`,
          attempts_made: attempt,
          status: outcome === 'retrying' ? 'pending' : outcome,
          next_attempt_at: retry ? new Date(Date.now() + retryDelayMs(attemptInRound, result)) : null,
          queued: false,
          claimed_until: null,
          updated_at: sql`now()`,
        })
        .where('id', '=', delivery)
        .where('status', '=', 'pending')
        .where('attempts_made', '<', attempt)
        .executeTakeFirst();
      if (updated.numUpdatedRows === 0n) return false;
      if (result.ok) {
        await trx.updateTable('webhook_endpoints').set({ failing_since: null }).where('id', '=', row.endpoint_id).where('failing_since', 'is not', null).execute();
        return true;
      }
      if (!row.enabled) return true;
      const disabled = await trx
        .updateTable('webhook_endpoints')
        .set({
          failing_since: sql`coalesce(failing_since, now())`,
          enabled: sql`enabled and not (coalesce(failing_since, now()) < now() - make_interval(hours => ${config.disableAfterHours}))`,
          disabled_reason: sql`case when enabled and coalesce(failing_since, now()) < now() - make_interval(hours => ${config.disableAfterHours})
            then 'Disabled automatically: every delivery failed since ' || tasks_api_iso(failing_since) || '.' else disabled_reason end`,
          updated_at: sql`now()`,
        })
        .where('id', '=', row.endpoint_id)
        .where('enabled', '=', true) // so that `enabled: false` below means this attempt disabled it, not its owner meanwhile
        .returning(['enabled'])
        .executeTakeFirst();
      if (disabled?.enabled === false) logger.warn('webhook endpoint disabled: its deliveries failed for too long', { webhook_id: row.endpoint_id });
      return true;
    });
    if (!recorded) return 'skipped';
    logger.log(outcome === 'succeeded' ? 'debug' : 'info', 'webhook delivery attempt', {
      delivery_id: delivery, webhook_id: row.endpoint_id, attempt, outcome, status_code: entry.status_code, duration_ms: entry.duration_ms, error: entry.error ?? undefined, detail: result.detail,
    });
    return outcome;
  };
}
