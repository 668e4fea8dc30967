import { describe, expect, it } from '@jest/globals';
import { checkEndpointUrl } from '../../src/webhooks/destination.js';
import { WebhookUrlRefused } from '../../src/webhooks/errors.js';

/**
 * Registration's URL check decides "this machine" from an IP literal's address, or from the names
 * that always mean this machine (`localhost`, `*.localhost`, RFC 6761), never from how a name looks:
 * `127.0.0.1.nip.io` is a DNS name like any other (its owner decides where it points), and so are
 * `127.evil.com` and `localhost.evil.com`. It used to test `startsWith('127.')` on the host name,
 * so in development plain http to such a name passed as "localhost".
 */
const development = { requireHttps: false, allowedAddresses: ['127.0.0.0/8', '::1/128'] };
const production = { requireHttps: true, allowedAddresses: [] };

const refusal = (url: string, config: typeof development): string | undefined => {
  try {
    checkEndpointUrl(url, config);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(WebhookUrlRefused);
    return (error as WebhookUrlRefused).message;
  }
};

describe('checkEndpointUrl in development (http for this machine only)', () => {
  it.each([
    'http://127.0.0.1.nip.io/hook',
    'http://127.0.0.1.nip.io./hook',
    'http://127.evil.com/hook',
    'http://127.0.0.1.evil.com:4000/hook',
    'http://localhost.evil.com/hook',
    'http://localhost.localhost.evil.com/hook',
    'http://0x7f.evil.com/hook',
    'http://127-0-0-1.sslip.io/hook',
    'http://[::ffff:127.0.0.1]/hook',
  ])('refuses plain http to %s, a name (or mapped address) that is not this machine', (url) => {
    expect(refusal(url, development)).toMatch(/must be an https URL|IPv4-mapped/);
  });

  it.each([
    'http://localhost:4000/hook',
    'http://localhost.:4000/hook',
    'http://api.localhost/hook',
    'http://127.0.0.1:4000/hook',
    'http://127.0.0.2/hook',
    'http://127.1/hook', // the URL parser's 127.0.0.1
    'http://2130706433/hook', // likewise
    'http://[::1]:4000/hook',
  ])('allows plain http to %s, this machine', (url) => {
    expect(refusal(url, development)).toBeUndefined();
  });

  it('allows https to any name: what it resolves to is checked on every connection', () => {
    expect(refusal('https://127.0.0.1.nip.io/hook', development)).toBeUndefined();
  });
});

describe('checkEndpointUrl in production', () => {
  it('refuses loopback by address or by the localhost names, and judges other names only when it connects', () => {
    for (const url of [
      'https://127.0.0.1/hook',
      'https://127.1/hook',
      'https://[::1]/hook',
      'https://localhost/hook',
      'https://x.localhost./hook',
    ]) {
      expect([url, refusal(url, production)]).toEqual([url, expect.stringMatching(/loopback/)]);
    }
    // A name, even one that spells an address: registered, and refused by the sender at connect time if it resolves there.
    expect(refusal('https://127.0.0.1.nip.io/hook', production)).toBeUndefined();
    expect(refusal('http://127.0.0.1.nip.io/hook', production)).toMatch(/must be an https URL/);
  });
});
