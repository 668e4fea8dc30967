import { NO_STORE, type Handlers } from '../http/handler.js';
import { pageWithLink } from '../http/paging.js';
import type { WebhookService } from './webhooks.service.js';

export type WebhookOperation =
  | 'listWebhooks'
  | 'createWebhook'
  | 'getWebhook'
  | 'updateWebhook'
  | 'deleteWebhook'
  | 'rotateWebhookSecret'
  | 'testWebhook'
  | 'listWebhookDeliveries'
  | 'redeliverWebhookDelivery';

/** HTTP for the webhooks feature: statuses, `Location` and `Link`; the rest is the service's. */
export function webhookHandlers(webhooks: WebhookService): Handlers<WebhookOperation> {
  return {
    listWebhooks: async ({ auth, query, raw }) => pageWithLink(raw, await webhooks.list(auth.ownerId, query)),

    async createWebhook({ auth, body, raw }) {
      const created = await webhooks.create(auth.ownerId, body);
      return {
        status: 201,
        body: created,
        headers: { Location: `${raw.baseUrl}${raw.path}/${created.id}`, ...NO_STORE },
      };
    },

    getWebhook: async ({ auth, path }) => ({ status: 200, body: await webhooks.get(auth.ownerId, path.webhookId) }),

    updateWebhook: async ({ auth, path, body }) => ({
      status: 200,
      body: await webhooks.update(auth.ownerId, path.webhookId, body),
    }),

    async deleteWebhook({ auth, path }) {
      await webhooks.remove(auth.ownerId, path.webhookId);
      return { status: 204 };
    },

    rotateWebhookSecret: async ({ auth, path }) => ({
      status: 200,
      body: await webhooks.rotateSecret(auth.ownerId, path.webhookId),
      headers: NO_STORE,
    }),

    testWebhook: async ({ auth, path }) => ({ status: 202, body: await webhooks.test(auth.ownerId, path.webhookId) }),

    listWebhookDeliveries: async ({ auth, path, query, raw }) =>
      pageWithLink(raw, await webhooks.deliveries(auth.ownerId, path.webhookId, query)),

    redeliverWebhookDelivery: async ({ auth, path }) => ({
      status: 202,
      body: await webhooks.redeliver(auth.ownerId, path.webhookId, path.deliveryId),
    }),
  };
}
