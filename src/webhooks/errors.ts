import { HttpProblem, ValidationFailed } from '../errors/problem.js';

/** 404 for an endpoint that does not exist and for another user's alike. */
export class WebhookNotFound extends HttpProblem {
  constructor(webhookId: string) {
    super(404, 'WEBHOOK_NOT_FOUND', 'Webhook not found', `No webhook ${webhookId} exists for this user.`);
  }
}

/** 404 for a delivery that is not one of this endpoint's (or not the caller's). */
export class DeliveryNotFound extends HttpProblem {
  constructor(deliveryId: string) {
    super(
      404,
      'WEBHOOK_DELIVERY_NOT_FOUND',
      'Webhook delivery not found',
      `No delivery ${deliveryId} exists for this webhook.`,
    );
  }
}

/** 409: a user's endpoints are bounded, so one user cannot make the worker fan each change out without limit. */
export class WebhookLimitReached extends HttpProblem {
  constructor(limit: number) {
    super(
      409,
      'WEBHOOK_LIMIT_REACHED',
      'Webhook limit reached',
      `You have ${limit} webhooks, the most one user may have. Delete one first.`,
    );
  }
}

/** 409: nothing is sent to a disabled endpoint, on request or otherwise. */
export class WebhookDisabled extends HttpProblem {
  constructor(webhookId: string) {
    super(
      409,
      'WEBHOOK_DISABLED',
      'Webhook disabled',
      `Webhook ${webhookId} is disabled; enable it (PATCH "enabled": true) first.`,
    );
  }
}

/** 422 for an endpoint URL the server will not call (scheme, credentials, or a non-public address). */
export class WebhookUrlRefused extends ValidationFailed {
  constructor(why: string) {
    super([{ in: 'body', pointer: '/url', detail: why }], `The webhook URL is refused: ${why}.`);
  }
}
