import type { Selectable } from 'kysely';
import type { components } from '../../generated/api.js';
import type { OwnerId } from '../auth/owner-id.js';
import type { WebhooksConfig } from '../config.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { WebhookDeliveriesTable, WebhookEndpointsTable } from '../db/schema.js';
import { creationPosition, decodeCursor, pageOf, queryFingerprint, type Position } from '../http/paging.js';
import { checkEndpointUrl } from './destination.js';
import { DeliveryNotFound, WebhookDisabled, WebhookLimitReached, WebhookNotFound } from './errors.js';
import { generateSecret } from './signing.js';
import { deliveryColumns, endpointColumns, webhooksOf, type EndpointFields } from './webhooks.repository.js';

type Schemas = components['schemas'];
type EndpointRow = Pick<Selectable<WebhookEndpointsTable>, (typeof endpointColumns)[number]>;
type DeliveryRow = Pick<Selectable<WebhookDeliveriesTable>, (typeof deliveryColumns)[number]>;

/** The most endpoints one user may have: each change fans out to every one of them. */
export const MAX_WEBHOOKS = 20;
const SORT = { field: 'created_at', direction: 'asc' } as const;

const iso = (value: Date | null): string | null => (value === null ? null : value.toISOString());

export function toWebhook(row: EndpointRow): Schemas['Webhook'] {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    events: row.events as Schemas['WebhookEventType'][],
    enabled: row.enabled,
    disabled_reason: row.disabled_reason,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export function toDelivery(row: DeliveryRow): Schemas['WebhookDelivery'] {
  return {
    id: row.id,
    webhook_id: row.endpoint_id,
    event_id: row.event_id,
    event_type: row.event_type as Schemas['WebhookDelivery']['event_type'],
    status: row.status,
    attempts_made: row.attempts_made,
    next_attempt_at: iso(row.next_attempt_at),
    postponed_reason: row.postponed_reason,
    attempts: row.attempts,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/**
 * The webhooks API for one owner at a time: endpoints (the secret shown only on creation and
 * rotation), test events, the delivery log and redelivery. Everything runs in the owner scope.
 */
export function webhookService(deps: {
  asOwner: OwnerScope;
  config: Pick<WebhooksConfig, 'requireHttps' | 'allowedAddresses' | 'secretGraceSeconds'>;
}) {
  const { asOwner, config } = deps;
  const of = <T>(owner: OwnerId, work: (webhooks: ReturnType<typeof webhooksOf>) => Promise<T>) =>
    asOwner(owner, (scoped) => work(webhooksOf(scoped, owner)));
  const withSecret = (row: EndpointRow & { secret: string }): Schemas['WebhookWithSecret'] => ({
    ...toWebhook(row),
    secret: row.secret,
  });
  const after = (cursor: string | undefined, fingerprint: string): Position | undefined =>
    cursor === undefined ? undefined : decodeCursor(cursor, fingerprint, SORT);

  /** The endpoint, or 404; and 409 when `enabled` is required and it is not. */
  async function endpoint(webhooks: ReturnType<typeof webhooksOf>, id: string, mustBeEnabled = false) {
    const row = await webhooks.find(id);
    if (row === undefined) throw new WebhookNotFound(id);
    if (mustBeEnabled && !row.enabled) throw new WebhookDisabled(id);
    return row;
  }

  return {
    async list(owner: OwnerId, query: { limit?: number; cursor?: string }): Promise<Schemas['WebhookPage']> {
      const limit = query.limit ?? 20;
      const fingerprint = queryFingerprint({ webhooks: true });
      const rows = await of(owner, (webhooks) => webhooks.page(limit + 1, after(query.cursor, fingerprint)));
      return pageOf(rows, limit, fingerprint, toWebhook, creationPosition);
    },

    async create(owner: OwnerId, body: Schemas['WebhookCreate']): Promise<Schemas['WebhookWithSecret']> {
      checkEndpointUrl(body.url, config);
      const fields: EndpointFields = {
        url: body.url,
        events: [...new Set(body.events)],
        description: body.description ?? null,
        enabled: body.enabled ?? true,
      };
      return of(owner, async (webhooks) => {
        if ((await webhooks.count()) >= MAX_WEBHOOKS) throw new WebhookLimitReached(MAX_WEBHOOKS);
        return withSecret(await webhooks.insert({ ...fields, secret: generateSecret() }));
      });
    },

    get: async (owner: OwnerId, id: string) => toWebhook(await of(owner, (webhooks) => endpoint(webhooks, id))),

    async update(owner: OwnerId, id: string, patch: Schemas['WebhookPatch']): Promise<Schemas['Webhook']> {
      if (patch.url !== undefined) checkEndpointUrl(patch.url, config);
      const fields: Partial<EndpointFields> = {
        ...patch,
        ...(patch.events === undefined ? {} : { events: [...new Set(patch.events)] }),
      };
      return asOwner.transaction(owner, async (scoped) => {
        const webhooks = webhooksOf(scoped, owner);
        if (Object.keys(fields).length === 0) return toWebhook(await endpoint(webhooks, id));
        const row = await webhooks.update(id, fields);
        if (row === undefined) throw new WebhookNotFound(id);
        if (fields.enabled === true || fields.url !== undefined) await webhooks.releaseHeld(id);
        return toWebhook(row);
      });
    },

    async remove(owner: OwnerId, id: string): Promise<void> {
      if (!(await of(owner, (webhooks) => webhooks.remove(id)))) throw new WebhookNotFound(id);
    },

    async rotateSecret(owner: OwnerId, id: string): Promise<Schemas['WebhookWithSecret']> {
      const row = await of(owner, (webhooks) => webhooks.rotate(id, generateSecret(), config.secretGraceSeconds));
      if (row === undefined) throw new WebhookNotFound(id);
      return withSecret(row);
    },

    test: async (owner: OwnerId, id: string): Promise<Schemas['WebhookDelivery']> =>
      toDelivery(
        await asOwner.transaction(owner, async (scoped) => {
          const webhooks = webhooksOf(scoped, owner);
          await endpoint(webhooks, id, true);
          return webhooks.insertTest(id);
        }),
      ),

    async deliveries(
      owner: OwnerId,
      id: string,
      query: { limit?: number; cursor?: string; status?: 'pending' | 'succeeded' | 'failed' },
    ): Promise<Schemas['WebhookDeliveryPage']> {
      const limit = query.limit ?? 20;
      const fingerprint = queryFingerprint({ deliveries: id, status: query.status ?? null });
      const position = after(query.cursor, fingerprint);
      const rows = await of(owner, async (webhooks) => {
        await endpoint(webhooks, id);
        return webhooks.deliveries(id, limit + 1, query.status, position);
      });
      return pageOf(rows, limit, fingerprint, toDelivery, creationPosition);
    },

    redeliver: async (owner: OwnerId, id: string, deliveryId: string): Promise<Schemas['WebhookDelivery']> =>
      toDelivery(
        await asOwner.transaction(owner, async (scoped) => {
          const webhooks = webhooksOf(scoped, owner);
          await endpoint(webhooks, id, true);
          const row = await webhooks.redeliver(id, deliveryId);
          if (row === undefined) throw new DeliveryNotFound(deliveryId);
          return row;
        }),
      ),
  };
}

export type WebhookService = ReturnType<typeof webhookService>;
