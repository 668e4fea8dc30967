import { sql, type Kysely } from 'kysely';
import type { WebhooksConfig } from '../../config.js';
import type { DB } from '../../db/schema.js';

/**
 * An admission counts against its owner's and endpoint's caps for this long at most. Its job runs
 * long before (pg-boss retries a failed job within 5 minutes, expires a dead worker's within a
 * minute); one still queued after this lost its job, and is admitted again (under the same job id:
 * if the job does exist after all, nothing is queued twice), so it can block nothing for ever.
 */
const ADMISSION_LEASE_SECONDS = 3600;
/** Serialises admission across workers: caps counted and spent by one relay at a time are exact. */
const RELAY_LOCK = 'tasks_api.webhook_relay';

/** A delivery admitted to the job queue: its attempt may start now. */
export interface Admission {
  id: string;
  owner_id: string;
  endpoint_id: string;
  attempts_made: number;
  retry_base: number;
  /** Its place among its owner's admitted deliveries (1 for the first): the queue runs all owners' firsts before anyone's second. */
  slot: number;
}

export interface AdmissionResult {
  /** Undefined when another worker's relay holds the lock (it is doing this work now). */
  admitted?: Admission[];
  /** Deliveries whose next attempt was moved later, by reason. */
  postponed: { rate_limited: number; circuit_open: number };
}

export type AdmissionLimits = Pick<
  WebhooksConfig,
  'ownerConcurrency' | 'endpointConcurrency' | 'ownerDeliveriesPerMinute' | 'circuitTimeouts'
>;

/**
 * The fetch policy of the webhook queue, applied where deliveries enter it (the relay from the
 * outbox), in one transaction that also queues what it admits:
 *
 * - A due delivery is admitted only while its owner has fewer than `ownerConcurrency` admitted
 *   deliveries (queued, not yet recorded), all endpoints together, and its endpoint fewer than
 *   `endpointConcurrency` (1 while the endpoint's circuit is tripped: one probe at a time). So the
 *   queue itself never holds more of one owner's work than the owner may run: a backlog of
 *   thousands waits in the outbox, and another owner's first delivery is admitted at the next
 *   relay and runs as soon as any slot frees, not behind that backlog.
 * - Owners are served in turn: each admission's `slot` (1 for an owner's first admitted delivery)
 *   orders this batch and becomes the job's priority, so every owner's first job is fetched before
 *   anyone's second.
 * - Each admission spends one of the owner's `ownerDeliveriesPerMinute` (a token bucket of that
 *   size, refilled at that rate). When it runs out, every due delivery of the owner is postponed
 *   to the instant its turn comes, with `postponed_reason = 'rate_limited'`: kept, shown, and sent then.
 * - An endpoint whose circuit is open gets nothing: its due deliveries are postponed to when the
 *   circuit half-opens, with `postponed_reason = 'circuit_open'`, and no attempt is used up.
 *
 * Why not pg-boss's own policy (node_modules/pg-boss/dist/plans.js, `fetchNextJob`): a job has one
 * group (`group_id`, with a `group_tier` that only picks the limit), so group concurrency caps the
 * endpoint or the owner, not both; the limit is checked in the fetch statement against the active
 * jobs its snapshot sees (`active_group_count_map`), with no lock, so two workers fetching at the
 * same moment can each start a group's last allowed job (the cap is exceeded once per concurrent
 * fetch); and the fetch takes `LIMIT n` candidates in `priority desc, created_on` order *before*
 * dropping the ones over their group's limit (`group_filtered`), so an owner whose thousands of
 * older jobs fill the candidate window leaves the fetch short while everyone's newer jobs wait.
 * Serialised admission (a transaction-level advisory lock, one relay at a time across every
 * worker) counts and spends exactly, and keeps the queue short enough that its plain
 * priority-then-age order is fair.
 */
export async function admitDue(db: Kysely<DB>, limits: AdmissionLimits, max: number): Promise<AdmissionResult> {
  const postponed = { rate_limited: 0, circuit_open: 0 };
  const {
    rows: [lock],
  } = await sql<{ got: boolean }>`select pg_try_advisory_xact_lock(hashtext(${RELAY_LOCK})) as got`.execute(db);
  if (!lock?.got) return { postponed };

  // An admission whose job was lost counts no more, and is admitted again below.
  await db
    .updateTable('webhook_deliveries')
    .set({ queued: false })
    .where('status', '=', 'pending')
    .where('queued', '=', true)
    .where('queued_at', '<', sql<Date>`now() - make_interval(secs => ${ADMISSION_LEASE_SECONDS})`)
    .execute();

  // An open circuit: the endpoint's due deliveries wait until it half-opens; their schedule does not move on.
  const held = await db
    .updateTable('webhook_deliveries as d')
    .from('webhook_endpoints as e')
    .set({ next_attempt_at: sql`e.circuit_open_until`, postponed_reason: 'circuit_open' })
    .whereRef('e.id', '=', 'd.endpoint_id')
    .where('e.circuit_open_until', '>', sql<Date>`now()`)
    .where('e.enabled', '=', true) // a disabled endpoint's deliveries end now, failed, as always
    .where('d.status', '=', 'pending')
    .where('d.queued', '=', false)
    .where('d.next_attempt_at', '<=', sql<Date>`now()`)
    .executeTakeFirst();
  postponed.circuit_open = Number(held.numUpdatedRows);

  const { rows: candidates } = await sql<Admission & { now: Date }>`
    with admitted as (
      select owner_id, endpoint_id, count(*)::int as n
        from webhook_deliveries
       where status = 'pending' and queued and queued_at > now() - make_interval(secs => ${ADMISSION_LEASE_SECONDS})
       group by owner_id, endpoint_id
    ), due as (
      select d.id, d.owner_id, d.endpoint_id, d.attempts_made, d.retry_base, d.next_attempt_at,
             row_number() over (partition by d.endpoint_id order by d.next_attempt_at, d.id) as endpoint_rank
        from webhook_deliveries d
       where d.status = 'pending' and not d.queued and d.next_attempt_at <= now()
    ), endpoint_room as (
      select due.*
        from due
        join webhook_endpoints e on e.id = due.endpoint_id
        left join (select endpoint_id, sum(n)::int as n from admitted group by endpoint_id) a on a.endpoint_id = due.endpoint_id
       where due.endpoint_rank + coalesce(a.n, 0) <= case when e.consecutive_timeouts >= ${limits.circuitTimeouts} then 1 else ${limits.endpointConcurrency} end
         and (e.circuit_open_until is null or e.circuit_open_until <= now() or not e.enabled)
    ), ranked as (
      select r.*, (coalesce(o.n, 0) + row_number() over (partition by r.owner_id order by r.next_attempt_at, r.id))::int as slot
        from endpoint_room r
        left join (select owner_id, sum(n)::int as n from admitted group by owner_id) o on o.owner_id = r.owner_id
    )
    select id, owner_id, endpoint_id, attempts_made, retry_base, slot, now() as now
      from ranked
     where slot <= ${limits.ownerConcurrency}
     order by slot, next_attempt_at, id
     limit ${max}`.execute(db);
  if (candidates.length === 0) return { admitted: [], postponed };

  // The owners' allowances: a token bucket of `perMinute`, kept as the instant up to which it is
  // spent. An admission may spend while that instant is less than a minute ahead; each spends
  // `interval`.
  const now = candidates[0]!.now.getTime();
  const interval = 60_000 / limits.ownerDeliveriesPerMinute;
  const owners = [...new Set(candidates.map((c) => c.owner_id))];
  const rates = await db
    .selectFrom('webhook_owner_rates')
    .select(['owner_id', 'spent_until'])
    .where('owner_id', 'in', owners)
    .execute();
  const spent = new Map(owners.map((owner) => [owner, now]));
  for (const rate of rates) spent.set(rate.owner_id, Math.max(now, rate.spent_until.getTime()));
  const admitted: Admission[] = [];
  const overdrawn = new Set<string>();
  for (const candidate of candidates) {
    const until = spent.get(candidate.owner_id)!;
    if (until - now > 60_000 - interval) {
      overdrawn.add(candidate.owner_id);
      continue;
    }
    spent.set(candidate.owner_id, until + interval);
    admitted.push({
      id: candidate.id,
      owner_id: candidate.owner_id,
      endpoint_id: candidate.endpoint_id,
      attempts_made: candidate.attempts_made,
      retry_base: candidate.retry_base,
      slot: candidate.slot,
    });
  }
  const touched = [...new Set(admitted.map((a) => a.owner_id))];
  if (touched.length > 0) {
    await db
      .insertInto('webhook_owner_rates')
      .values(touched.map((owner) => ({ owner_id: owner, spent_until: new Date(Math.ceil(spent.get(owner)!)) })))
      .onConflict((oc) => oc.column('owner_id').doUpdateSet({ spent_until: (eb) => eb.ref('excluded.spent_until') }))
      .execute();
    await db
      .updateTable('webhook_deliveries')
      .set({ queued: true, queued_at: sql`now()` })
      .where(
        'id',
        'in',
        admitted.map((a) => a.id),
      )
      .execute();
  }
  // An owner out of allowance: each of its due deliveries waits for its own turn, one `interval`
  // after the other from the instant the allowance has room again.
  for (const owner of overdrawn) {
    const next = new Date(Math.ceil(spent.get(owner)! - (60_000 - interval)));
    const moved = await sql`
      update webhook_deliveries d
         set next_attempt_at = ${next}::timestamptz + make_interval(secs => r.k * ${interval / 1000}::float8),
             postponed_reason = 'rate_limited'
        from (select id, row_number() over (order by next_attempt_at, id) - 1 as k
                from webhook_deliveries
               where owner_id = ${owner} and status = 'pending' and not queued and next_attempt_at <= now()) r
       where d.id = r.id`.execute(db);
    postponed.rate_limited += Number(moved.numAffectedRows ?? 0n);
  }
  return { admitted, postponed };
}
