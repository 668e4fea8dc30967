import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import type { Position } from '../http/paging.js';

/** The columns the API shows of an endpoint; never the secrets or the owner. */
export const endpointColumns = [
  'id',
  'url',
  'description',
  'events',
  'enabled',
  'disabled_reason',
  'created_at',
  'updated_at',
] as const;
/** The columns the API shows of a delivery; the payload stays in the database. */
export const deliveryColumns = [
  'id',
  'endpoint_id',
  'event_id',
  'event_type',
  'status',
  'attempts_made',
  'next_attempt_at',
  'postponed_reason',
  'attempts',
  'created_at',
  'updated_at',
] as const;

export interface EndpointFields {
  url: string;
  events: string[];
  description?: string | null;
  enabled?: boolean;
}

/**
 * All Kysely code of the webhooks API, for one owner: every query starts from the owner's rows,
 * and row-level security holds it there too. Deliveries are written here only as outbox rows
 * (pending, not queued): the worker's relay queues them.
 */
export function webhooksOf(db: Kysely<DB>, owner: OwnerId) {
  const endpoints = () => db.selectFrom('webhook_endpoints').where('owner_id', '=', owner);

  return {
    /** Oldest first, after `after`. */
    page: (limit: number, after?: Position) =>
      endpoints()
        .select(endpointColumns)
        .$if(after !== undefined, (qb) =>
          qb.where(sql<boolean>`(created_at, id) > (${after!.key}::timestamptz, ${after!.id}::uuid)`),
        )
        .orderBy('created_at')
        .orderBy('id')
        .limit(limit)
        .execute(),

    count: async () =>
      Number(
        (
          await endpoints()
            .select((eb) => eb.fn.countAll<string | number>().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      ),

    find: (id: string) =>
      endpoints()
        .select([...endpointColumns, 'secret'])
        .where('id', '=', id)
        .executeTakeFirst(),

    insert: (fields: EndpointFields & { secret: string }) =>
      db
        .insertInto('webhook_endpoints')
        .values({ ...fields, owner_id: owner })
        .returning([...endpointColumns, 'secret'])
        .executeTakeFirstOrThrow(),

    /**
     * Enabling clears the reason it was disabled and its failure streak; enabling it or changing
     * its URL closes its circuit (the endpoint is worth trying again at once: see `releaseHeld`).
     */
    update: (id: string, fields: Partial<EndpointFields>) =>
      db
        .updateTable('webhook_endpoints')
        .set({
          ...fields,
          ...(fields.enabled === true ? { disabled_reason: null, failing_since: null } : {}),
          ...(fields.enabled === true || fields.url !== undefined
            ? { consecutive_timeouts: 0, circuit_trips: 0, circuit_open_until: null }
            : {}),
          updated_at: sql`now()`,
        })
        .where('owner_id', '=', owner)
        .where('id', '=', id)
        .returning(endpointColumns)
        .executeTakeFirst(),

    /** The endpoint's deliveries waiting for its circuit to close: due now (the relay admits them as for any delivery). */
    releaseHeld: (endpointId: string) =>
      db
        .updateTable('webhook_deliveries')
        .set({ next_attempt_at: sql`now()`, postponed_reason: null })
        .where('owner_id', '=', owner)
        .where('endpoint_id', '=', endpointId)
        .where('status', '=', 'pending')
        .where('queued', '=', false)
        .where('postponed_reason', '=', 'circuit_open')
        .execute(),

    async remove(id: string): Promise<boolean> {
      const result = await db
        .deleteFrom('webhook_endpoints')
        .where('owner_id', '=', owner)
        .where('id', '=', id)
        .executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    /** A new secret; the current one keeps signing beside it until `graceSeconds` from now. */
    rotate: (id: string, secret: string, graceSeconds: number) =>
      db
        .updateTable('webhook_endpoints')
        .set({
          previous_secret: sql`secret`,
          previous_secret_expires_at: sql`now() + make_interval(secs => ${graceSeconds})`,
          secret,
          updated_at: sql`now()`,
        })
        .where('owner_id', '=', owner)
        .where('id', '=', id)
        .returning([...endpointColumns, 'secret'])
        .executeTakeFirst(),

    /** Newest first, after `after`, optionally only in one state. */
    deliveries: (
      endpointId: string,
      limit: number,
      status: 'pending' | 'succeeded' | 'failed' | undefined,
      after?: Position,
    ) =>
      db
        .selectFrom('webhook_deliveries')
        .select(deliveryColumns)
        .where('owner_id', '=', owner)
        .where('endpoint_id', '=', endpointId)
        .$if(status !== undefined, (qb) => qb.where('status', '=', status!))
        .$if(after !== undefined, (qb) =>
          qb.where(sql<boolean>`(created_at, id) < (${after!.key}::timestamptz, ${after!.id}::uuid)`),
        )
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .limit(limit)
        .execute(),

    /** A `webhook.test` event for this endpoint alone, into the outbox. */
    insertTest(endpointId: string) {
      const eventId = randomUUID();
      const payload = {
        id: eventId,
        type: 'webhook.test',
        timestamp: new Date().toISOString(),
        data: { webhook_id: endpointId },
      };
      return db
        .insertInto('webhook_deliveries')
        .values({
          owner_id: owner,
          endpoint_id: endpointId,
          event_id: eventId,
          event_type: 'webhook.test',
          payload: JSON.stringify(payload),
          next_attempt_at: sql`now()`,
        })
        .returning(deliveryColumns)
        .executeTakeFirstOrThrow();
    },

    /**
     * Starts a new round of attempts now for a delivery that ended, or that waits for a retry
     * (its schedule starts again). One that is due (not yet attempted, or an attempt under way or
     * about to be) is left as it is: it is being sent anyway. A redelivery goes through the same
     * caps as any delivery (the owner's rate, the endpoint's circuit): the relay may postpone it
     * again, saying why. The delivery as it then is.
     */
    redeliver: async (endpointId: string, deliveryId: string) =>
      (await db
        .updateTable('webhook_deliveries')
        .set({
          status: 'pending',
          queued: false,
          next_attempt_at: sql`now()`,
          postponed_reason: null,
          retry_base: sql`attempts_made`,
          updated_at: sql`now()`,
        })
        .where('owner_id', '=', owner)
        .where('endpoint_id', '=', endpointId)
        .where('id', '=', deliveryId)
        .where((eb) =>
          eb.or([
            eb('status', '<>', 'pending'),
            eb.and([eb('attempts_made', '>', 0), eb('next_attempt_at', '>', sql<Date>`now()`)]),
          ]),
        )
        .returning(deliveryColumns)
        .executeTakeFirst()) ??
      (await db
        .selectFrom('webhook_deliveries')
        .select(deliveryColumns)
        .where('owner_id', '=', owner)
        .where('endpoint_id', '=', endpointId)
        .where('id', '=', deliveryId)
        .executeTakeFirst()),
  };
}
