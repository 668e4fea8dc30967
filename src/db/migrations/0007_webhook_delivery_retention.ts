import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * The webhook worker deletes deliveries that ended (succeeded or failed) more than
 * WEBHOOK_DELIVERY_RETENTION_DAYS ago; this index finds them without reading the whole log.
 */
export const webhookDeliveryRetention: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`create index webhook_deliveries_ended_idx on webhook_deliveries (updated_at) where status <> 'pending'`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    await sql`drop index webhook_deliveries_ended_idx`.execute(db);
  },
};
