import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** The Standard Webhooks secret prefix: what follows it is the base64 of the HMAC key. */
const SECRET_PREFIX = 'whsec_';

/**
 * A new endpoint secret, `whsec_` + base64 of 32 random bytes: the format Standard Webhooks
 * libraries take as is (`new Webhook(secret)`), so a receiver pastes it without converting it;
 * 32 bytes is a full-strength HMAC-SHA256 key.
 */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** The three headers of a signed Standard Webhooks request. */
export type SignatureHeaders = Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string>;

/** Signing needs at least one secret; an endpoint without one is a bug upstream, not something to send unsigned. */
export class NoSigningSecret extends Error {
  override name = 'NoSigningSecret';
  readonly code = 'WEBHOOK_NO_SIGNING_SECRET';
  constructor() {
    super('a webhook is signed with at least one secret');
  }
}

/**
 * The Standard Webhooks headers for one request (https://www.standardwebhooks.com): the message id
 * (the same on every retry, so receivers can de-duplicate), the time in whole seconds (receivers
 * refuse old ones, which stops replays), and `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for
 * each secret, space-separated. During a secret rotation both the new and the previous secret
 * sign, so a receiver verifies with whichever one it has while it switches over.
 *
 * Each signature is made by the `standardwebhooks` reference library itself, so what is sent is by
 * construction what its `verify` (and every port of it) accepts.
 */
export function signatureHeaders(input: {
  id: string;
  timestamp: Date;
  body: string;
  secrets: string[];
}): SignatureHeaders {
  if (input.secrets.length === 0) throw new NoSigningSecret();
  const signatures = input.secrets.map((secret) => new Webhook(secret).sign(input.id, input.timestamp, input.body));
  return {
    'webhook-id': input.id,
    'webhook-timestamp': String(Math.floor(input.timestamp.getTime() / 1000)),
    'webhook-signature': signatures.join(' '),
  };
}
