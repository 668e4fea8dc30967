import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Webhooks, third step: delivery capacity shared between owners (see src/webhooks/jobs/relay.ts).
 * - `webhook_deliveries.queued_at`: when the relay admitted the delivery to the job queue. The
 *   admitted deliveries of an owner (and of an endpoint) are what its concurrency cap counts; one
 *   admitted long ago (its job lost) stops counting, so it cannot block its owner for ever.
 * - `webhook_deliveries.postponed_reason`: why the next attempt waits beyond its schedule
 *   (`rate_limited`: the owner's deliveries per minute; `circuit_open`: its endpoint kept timing
 *   out). Shown in the delivery log; cleared when the attempt is made.
 * - `webhook_endpoints.consecutive_timeouts`, `circuit_open_until`, `circuit_trips`: the circuit
 *   breaker. After that many timeouts in a row the endpoint gets nothing until `circuit_open_until`,
 *   then one attempt; each reopening without an answer in between doubles the wait.
 * - `webhook_owner_rates`: each owner's allowance of attempts per minute (a token bucket kept as the
 *   one instant up to which it is spent). Only the worker (the connecting role) uses it; requests'
 *   role has no grant on it at all.
 */
export const webhookCapacity: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`alter table webhook_deliveries add column queued_at timestamptz(3)`.execute(db);
    await sql`
      alter table webhook_deliveries add column postponed_reason text
        check (postponed_reason in ('rate_limited', 'circuit_open'))`.execute(db);
    await sql`create index webhook_deliveries_admitted_idx on webhook_deliveries (owner_id, endpoint_id) where status = 'pending' and queued`.execute(
      db,
    );
    await sql`alter table webhook_endpoints add column consecutive_timeouts integer not null default 0`.execute(db);
    await sql`alter table webhook_endpoints add column circuit_open_until timestamptz(3)`.execute(db);
    await sql`alter table webhook_endpoints add column circuit_trips integer not null default 0`.execute(db);
    await sql`create index webhook_endpoints_circuit_idx on webhook_endpoints (circuit_open_until) where circuit_open_until is not null`.execute(
      db,
    );
    await sql`
      create table webhook_owner_rates (
        owner_id text primary key,
        spent_until timestamptz(3) not null
      )`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    await sql`drop table webhook_owner_rates`.execute(db);
    await sql`drop index webhook_endpoints_circuit_idx`.execute(db);
    await sql`alter table webhook_endpoints drop column circuit_trips, drop column circuit_open_until, drop column consecutive_timeouts`.execute(
      db,
    );
    await sql`drop index webhook_deliveries_admitted_idx`.execute(db);
    await sql`alter table webhook_deliveries drop column postponed_reason, drop column queued_at`.execute(db);
  },
};
