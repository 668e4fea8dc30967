import { sql, type Kysely } from 'kysely';
import type { WebhooksConfig } from '../../config.js';
import type { DB, StoredAttempt } from '../../db/schema.js';
import type { Logger } from '../../logger.js';
import { isRetryable, type SendResult } from '../sender.js';
import { signatureHeaders } from '../signing.js';
import { contextOf, failed, inSpan, spanContextOf } from '../../telemetry/tracing.js';

/** The longest a `Retry-After` may push a retry back (a receiver asking for more gets this). */
const MAX_RETRY_AFTER_SECONDS = 6 * 3600;
/** Attempts kept per delivery (the oldest go first); the contract's maxItems. */
const KEPT_ATTEMPTS = 100;
/** The longest an endpoint's circuit stays open at a time (unless WEBHOOK_CIRCUIT_OPEN_SECONDS is longer). */
const MAX_CIRCUIT_OPEN_SECONDS = 3600;

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

/** What a delivery job did, for metrics and tests; `postponed`: nothing sent, its endpoint's circuit is open. */
export type DeliveryOutcome = 'succeeded' | 'retrying' | 'failed' | 'skipped' | 'postponed';

/** How long an endpoint's circuit stays open the `trips`-th time in a row (0 for the first): doubling, up to an hour. */
export const circuitOpenSeconds = (baseSeconds: number, trips: number) =>
  Math.min(Math.max(MAX_CIRCUIT_OPEN_SECONDS, baseSeconds), baseSeconds * 2 ** Math.min(trips, 20));

/** A failed attempt that held its slot to the end: what the circuit breaker counts. */
const timedOut = (result: SendResult) => result.error === 'timeout' || (result.error?.includes('(ETIMEDOUT)') ?? false);

/**
 * Runs one attempt of one delivery: signs the stored payload (Standard Webhooks, with the previous
 * secret too during a rotation's grace period), sends it, and records the attempt in one
 * transaction with what follows: done, a retry at the schedule's next delay (or later if the
 * receiver's Retry-After asks), or failed for good. The endpoint's health follows: any success
 * clears `failing_since`; an endpoint failing for longer than `disableAfterHours` is disabled with
 * the reason. Runs as the connecting role, across owners.
 *
 * The circuit breaker: an attempt that timed out adds one to the endpoint's `consecutive_timeouts`,
 * any other outcome sets it back to 0 (and closes the circuit). The `circuitTimeouts`-th timeout in
 * a row opens the circuit for `circuitOpenSeconds`, twice that the next time it opens without an
 * answer in between, and so on up to an hour: meanwhile the relay admits nothing for the endpoint
 * (its deliveries wait, `postponed_reason = 'circuit_open'`, no retry used up), and a job admitted
 * before it opened sends nothing either. Then one attempt is admitted; if it times out too, the
 * circuit opens again. A hanging endpoint so holds its slots for `circuitTimeouts` timeouts, then
 * one slot for one timeout per open period, not for the day its retries would last.
 *
 * A job for an attempt that is already recorded (its worker crashed after recording, or the job
 * was queued twice) does nothing; one whose worker crashed before recording runs the attempt again,
 * with the same `webhook-id`: deliveries are at least once.
 */
export function deliveryRunner(deps: {
  db: Kysely<DB>;
  send: Send;
  config: Pick<
    WebhooksConfig,
    'retrySchedule' | 'disableAfterHours' | 'timeoutMs' | 'circuitTimeouts' | 'circuitOpenSeconds'
  >;
  logger: Logger;
  random?: () => number;
  /** Called when an attempt opens its endpoint's circuit (for a metric). */
  onCircuitOpen?: () => void;
}) {
  const { db, send, config, logger } = deps;
  const random = deps.random ?? Math.random;
  const claimSeconds = claimSecondsFor(config.timeoutMs);

  function retryDelayMs(attemptInRound: number, result: SendResult): number {
    const base = config.retrySchedule[attemptInRound - 1]! * 1000;
    const jittered = base * (0.8 + 0.4 * random());
    const asked =
      result.retryAfterSeconds === undefined ? 0 : Math.min(result.retryAfterSeconds, MAX_RETRY_AFTER_SECONDS) * 1000;
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
      .returning([
        'd.event_id',
        'd.payload',
        'd.retry_base',
        'd.endpoint_id',
        'd.event_type',
        'd.traceparent',
        'e.url',
        'e.enabled',
        'e.secret',
        'e.previous_secret',
        'e.previous_secret_expires_at',
        'e.circuit_open_until',
      ])
      .returning(sql<boolean>`coalesce(e.circuit_open_until > now(), false)`.as('circuit_open'))
      .executeTakeFirst();
    if (row === undefined) return 'skipped';
    if (row.circuit_open && row.enabled) {
      // Admitted before the circuit opened: back to the outbox until it half-opens, no attempt made.
      const released = await db
        .updateTable('webhook_deliveries')
        .set({
          queued: false,
          queued_at: null,
          claimed_until: null,
          next_attempt_at: row.circuit_open_until,
          postponed_reason: 'circuit_open',
        })
        .where('id', '=', delivery)
        .where('status', '=', 'pending')
        .where('attempts_made', '<', attempt)
        .executeTakeFirst();
      return released.numUpdatedRows === 0n ? 'skipped' : 'postponed';
    }

    // The attempt continues the trace of the change that wrote the delivery (its traceparent,
    // stored by the outbox), so one trace shows the request, its transaction and every attempt;
    // the outgoing request is its child and carries `traceparent` to the receiver.
    const cause = spanContextOf(row.traceparent);
    const attributes = {
      'tasks_api.webhook.delivery_id': delivery,
      'tasks_api.webhook.endpoint_id': row.endpoint_id,
      'tasks_api.webhook.event_type': row.event_type,
      'tasks_api.webhook.attempt': attempt,
    };
    return inSpan(
      'webhook delivery attempt',
      attributes,
      async (span) => {
        const started = new Date();
        let result: SendResult;
        if (!row.enabled) {
          result = { ok: false, durationMs: 0, error: 'not sent: the endpoint is disabled', refused: true };
        } else {
          const body = JSON.stringify(row.payload);
          const graceful =
            row.previous_secret !== null &&
            row.previous_secret_expires_at !== null &&
            row.previous_secret_expires_at > started;
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
        let opened: { timeouts: number; seconds: number } | undefined;
        const recorded = await db.transaction().execute(async (trx) => {
          const updated = await trx
            .updateTable('webhook_deliveries')
            .set({
              attempts: sql`(case when jsonb_array_length(attempts) >= ${KEPT_ATTEMPTS} then attempts - 0 else attempts end) || ${JSON.stringify([entry])}::jsonb`,
              attempts_made: attempt,
              status: outcome === 'retrying' ? 'pending' : outcome,
              next_attempt_at: retry ? new Date(Date.now() + retryDelayMs(attemptInRound, result)) : null,
              postponed_reason: null,
              queued: false,
              queued_at: null,
              claimed_until: null,
              updated_at: sql`now()`,
            })
            .where('id', '=', delivery)
            .where('status', '=', 'pending')
            .where('attempts_made', '<', attempt)
            .executeTakeFirst();
          if (updated.numUpdatedRows === 0n) return false;
          if (!row.enabled) return true;
          const answered = !timedOut(result);
          if (result.ok) {
            await trx
              .updateTable('webhook_endpoints')
              .set({ failing_since: null, consecutive_timeouts: 0, circuit_trips: 0, circuit_open_until: null })
              .where('id', '=', row.endpoint_id)
              .where((eb) =>
                eb.or([
                  eb('failing_since', 'is not', null),
                  eb('consecutive_timeouts', '>', 0),
                  eb('circuit_open_until', 'is not', null),
                ]),
              )
              .execute();
            return true;
          }
          // Read under the row's lock, so that of two attempts timing out together only one opens the circuit.
          const health = await trx
            .selectFrom('webhook_endpoints')
            .select([
              'consecutive_timeouts',
              'circuit_trips',
              sql<boolean>`coalesce(circuit_open_until > now(), false)`.as('open'),
            ])
            .where('id', '=', row.endpoint_id)
            .forUpdate()
            .executeTakeFirst();
          if (health === undefined) return true;
          const opens = !answered && !health.open && health.consecutive_timeouts + 1 >= config.circuitTimeouts;
          const openSeconds = circuitOpenSeconds(config.circuitOpenSeconds, health.circuit_trips);
          const circuit = answered
            ? { consecutive_timeouts: 0, circuit_trips: 0, circuit_open_until: null }
            : opens
              ? {
                  consecutive_timeouts: sql<number>`consecutive_timeouts + 1`,
                  circuit_trips: sql<number>`circuit_trips + 1`,
                  circuit_open_until: sql<Date>`now() + make_interval(secs => ${openSeconds})`,
                }
              : { consecutive_timeouts: sql<number>`consecutive_timeouts + 1` };
          opened = opens ? { timeouts: health.consecutive_timeouts + 1, seconds: openSeconds } : undefined;
          const disabled = await trx
            .updateTable('webhook_endpoints')
            .set({
              ...circuit,
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
          if (disabled?.enabled === false)
            logger.warn('webhook endpoint disabled: its deliveries failed for too long', {
              webhook_id: row.endpoint_id,
            });
          return true;
        });
        if (!recorded) return 'skipped';
        if (opened !== undefined) {
          deps.onCircuitOpen?.();
          logger.warn('webhook endpoint circuit opened: its attempts keep timing out', {
            webhook_id: row.endpoint_id,
            timeouts: opened.timeouts,
            open_seconds: opened.seconds,
          });
        }
        logger.log(outcome === 'succeeded' ? 'debug' : 'info', 'webhook delivery attempt', {
          delivery_id: delivery,
          webhook_id: row.endpoint_id,
          attempt,
          outcome,
          status_code: entry.status_code,
          duration_ms: entry.duration_ms,
          error: entry.error ?? undefined,
          detail: result.detail,
        });
        span?.setAttribute('tasks_api.webhook.outcome', outcome);
        if (entry.status_code !== null) span?.setAttribute('http.response.status_code', entry.status_code);
        if (!result.ok && span !== undefined) failed(span, entry.error ?? `HTTP ${entry.status_code}`);
        return outcome;
      },
      cause && { parent: contextOf(cause), links: [{ context: cause }] },
    );
  };
}
