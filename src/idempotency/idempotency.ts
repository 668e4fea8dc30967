import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { OwnerScope } from '../db/owner-scope.js';
import { backgroundPurge } from '../db/purge.js';
import type { DB } from '../db/schema.js';
import { HttpProblem, ValidationFailed } from '../errors/problem.js';

/** How long a key and its stored response live. */
const KEY_LIFETIME = sql`interval '24 hours'`;
/** An in-flight claim older than this belonged to a request that died (crash, lost connection): it may be taken over. */
const ABANDONED_AFTER = sql`interval '1 minute'`;
/** Expired keys are deleted at most this often per process. */
const PURGE_EVERY_MS = 60 * 60 * 1000;

/** A response as it is stored for replay: byte-identical body, the headers that matter. */
export interface StoredResponse {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** 409: a request with this key is still being processed. */
export class IdempotencyKeyInUse extends HttpProblem {
  constructor() {
    super(
      409,
      'IDEMPOTENCY_KEY_IN_USE',
      'Idempotency key in use',
      'A request with this Idempotency-Key is still in flight; retry shortly to get its response.',
      { headers: { 'Retry-After': '1' } },
    );
  }
}

/** 422: the key was used before with a different request body. */
export class IdempotencyKeyReused extends ValidationFailed {
  constructor() {
    super(
      [{ in: 'header', pointer: '/Idempotency-Key', detail: 'was already used with a different request body' }],
      'This Idempotency-Key was already used with a different request body; use a new key for a new request.',
    );
  }
}

/** JSON with object keys sorted at every level, so equal bodies hash equally whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const requestHash = (body: unknown): string => createHash('sha256').update(canonical(body)).digest('base64url');

/**
 * Idempotent execution over one database, purging expired keys now and then (at most once an
 * hour per instance, in the background).
 */
export function idempotency(db: Kysely<DB>, asOwner: OwnerScope) {
  const purgeExpired = backgroundPurge(PURGE_EVERY_MS, () =>
    db
      .deleteFrom('idempotency_keys')
      .where('created_at', '<', sql<Date>`now() - ${KEY_LIFETIME}`)
      .execute(),
  );
  return {
    run(
      owner: OwnerId,
      key: string,
      body: unknown,
      perform: (trx: Kysely<DB>) => Promise<StoredResponse>,
    ): Promise<StoredResponse> {
      purgeExpired();
      return idempotently(asOwner, owner, key, body, perform);
    },
  };
}

/**
 * Runs `perform` at most once per (owner, key) within 24 hours and replays its response to every
 * repeat with the same body. The claim is committed on its own before `perform` starts, so a
 * concurrent duplicate — in any process — sees it and gets 409 instead of running again; the
 * response is stored in the same transaction as `perform`'s writes, so a replayed response always
 * describes committed data. If `perform` fails, the claim is released and a retry runs afresh.
 */
async function idempotently(
  asOwner: OwnerScope,
  owner: OwnerId,
  key: string,
  body: unknown,
  perform: (trx: Kysely<DB>) => Promise<StoredResponse>,
  attempt = 1,
): Promise<StoredResponse> {
  const hash = requestHash(body);
  const claimed = await asOwner(owner, (scoped) =>
    scoped
      .insertInto('idempotency_keys')
      .values({ owner_id: owner, key, request_hash: hash, state: 'in_flight' })
      .onConflict((oc) =>
        oc
          .columns(['owner_id', 'key'])
          .doUpdateSet({
            request_hash: hash,
            state: 'in_flight',
            response_status: null,
            response_body: null,
            response_headers: null,
            created_at: sql`now()`,
          })
          .where((eb) =>
            eb.or([
              eb('idempotency_keys.created_at', '<', sql<Date>`now() - ${KEY_LIFETIME}`),
              eb.and([
                eb('idempotency_keys.state', '=', 'in_flight'),
                eb('idempotency_keys.created_at', '<', sql<Date>`now() - ${ABANDONED_AFTER}`),
              ]),
            ]),
          ),
      )
      .returning('key')
      .executeTakeFirst(),
  );

  if (!claimed) {
    const existing = await asOwner(owner, (scoped) =>
      scoped
        .selectFrom('idempotency_keys')
        .select(['request_hash', 'state', 'response_status', 'response_body', 'response_headers'])
        .where('owner_id', '=', owner)
        .where('key', '=', key)
        .executeTakeFirst(),
    );
    // Released by a failed attempt between our insert and this read: claim it again.
    if (!existing) {
      if (attempt >= 3) throw new IdempotencyKeyInUse();
      return idempotently(asOwner, owner, key, body, perform, attempt + 1);
    }
    if (existing.request_hash !== hash) throw new IdempotencyKeyReused();
    if (existing.state === 'in_flight') throw new IdempotencyKeyInUse();
    return {
      status: existing.response_status!,
      body: JSON.parse(existing.response_body!),
      headers: { ...(JSON.parse(existing.response_headers!) as Record<string, string>), 'Idempotent-Replayed': 'true' },
    };
  }

  try {
    return await asOwner.transaction(owner, async (trx) => {
      const response = await perform(trx);
      await trx
        .updateTable('idempotency_keys')
        .set({
          state: 'done',
          response_status: response.status,
          response_body: JSON.stringify(response.body),
          response_headers: JSON.stringify(response.headers),
        })
        .where('owner_id', '=', owner)
        .where('key', '=', key)
        .execute();
      return response;
    });
  } catch (error) {
    await asOwner(owner, (scoped) =>
      scoped
        .deleteFrom('idempotency_keys')
        .where('owner_id', '=', owner)
        .where('key', '=', key)
        .where('state', '=', 'in_flight')
        .execute(),
    ).catch(() => undefined); // the claim expires on its own if the database is gone
    throw error;
  }
}
