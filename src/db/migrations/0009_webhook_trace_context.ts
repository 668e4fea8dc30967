import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/** The transaction-local setting the request path fills while tracing is on (db/roles.ts's TRACEPARENT_SETTING; frozen here). */
export const TRACEPARENT_SETTING = 'tasks_api.traceparent';

/**
 * Webhooks, fourth step: the trace context of the change that caused a delivery.
 * `webhook_deliveries.traceparent` is the W3C `traceparent` of the request whose transaction wrote
 * the delivery, taken from a transaction-local setting by the column's default, so the outbox
 * trigger (0007) writes it without being replaced. A delivery attempt continues that trace and
 * sends it on to the receiver. Null when tracing was off; never checked here (a malformed value
 * must not fail the task's write): the worker ignores one it cannot read. Rows that exist get null.
 */
export const webhookTraceContext: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`alter table webhook_deliveries add column traceparent text`.execute(db);
    await sql`
      alter table webhook_deliveries alter column traceparent
        set default nullif(current_setting(${sql.lit(TRACEPARENT_SETTING)}, true), '')`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    await sql`alter table webhook_deliveries drop column traceparent`.execute(db);
  },
};
