import { describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { generateSecret, signatureHeaders } from '../../src/webhooks/signing.js';

const body = JSON.stringify({ id: 'msg_2', type: 'task.created', data: { title: 'Ünïcode ✓' } });

describe('generateSecret', () => {
  it('makes whsec_ + base64 of 32 random bytes, a new one each time', () => {
    const [a, b] = [generateSecret(), generateSecret()];
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(a.slice('whsec_'.length), 'base64')).toHaveLength(32);
    expect(a).not.toBe(b);
  });
});

describe('signatureHeaders', () => {
  it('signs per Standard Webhooks: integer-second timestamp, v1 HMAC-SHA256 of "id.timestamp.body" with the decoded key', () => {
    const secret = generateSecret();
    const timestamp = new Date(1_700_000_000_999);
    const headers = signatureHeaders({ id: 'msg_2', timestamp, body, secrets: [secret] });
    const expected = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64'))
      .update(`msg_2.1700000000.${body}`)
      .digest('base64');
    expect(headers).toEqual({
      'webhook-id': 'msg_2',
      'webhook-timestamp': '1700000000',
      'webhook-signature': `v1,${expected}`,
    });
  });

  it('signs with every secret during a rotation, and each verifies with the standardwebhooks library', () => {
    const [current, previous] = [generateSecret(), generateSecret()];
    const headers = signatureHeaders({ id: 'msg_2', timestamp: new Date(), body, secrets: [current, previous] });
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    expect(headers['webhook-signature']).toMatch(/^v1,\S+ v1,\S+$/);
    for (const secret of [current, previous])
      expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it('does not verify with another secret, another body or another id', () => {
    const secret = generateSecret();
    const headers = signatureHeaders({ id: 'msg_2', timestamp: new Date(), body, secrets: [secret] });
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow(WebhookVerificationError);
    expect(() => new Webhook(secret).verify(body.replace('msg_2', 'msg_3'), headers)).toThrow(WebhookVerificationError);
    expect(() => new Webhook(secret).verify(body, { ...headers, 'webhook-id': 'msg_3' })).toThrow(
      WebhookVerificationError,
    );
  });

  it('refuses to sign with no secret at all', () => {
    expect(() => signatureHeaders({ id: 'msg_2', timestamp: new Date(), body, secrets: [] })).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_NO_SIGNING_SECRET' }),
    );
  });
});
