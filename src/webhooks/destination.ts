import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { WebhooksConfig } from '../config.js';
import { addressRefusal } from './address-rules.js';
import { WebhookUrlRefused } from './errors.js';

/** Host names that always mean this machine. */
const isLocalName = (host: string) => host === 'localhost' || host.endsWith('.localhost');

/**
 * Refuses, with 422 on `/url`, an endpoint URL the worker would never call: credentials in it;
 * http where https is required (production), or for anything but this machine (development);
 * an IP-literal or localhost host the sender refuses (private, loopback, link-local, metadata and
 * other reserved ranges, unless WEBHOOK_ALLOWED_ADDRESSES allows them). Names are not resolved
 * here: what a name resolves to is checked when the sender connects, on every attempt.
 */
export function checkEndpointUrl(raw: string, config: Pick<WebhooksConfig, 'requireHttps' | 'allowedAddresses'>): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookUrlRefused('is not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new WebhookUrlRefused('must be an https URL');
  if (url.username !== '' || url.password !== '') throw new WebhookUrlRefused('must not carry a user name or password');
  // `localhost.` is `localhost`: a DNS name's trailing dot only makes it fully qualified. The URL
  // parser has already turned every IPv4 spelling (`2130706433`, `0x7f.1`, `127.1`) into a dotted quad.
  const host = url.hostname
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
  // Only an IP literal is judged by its address here; a name is a name, whatever it looks like
  // (`127.0.0.1.nip.io`, `127.evil.com` and `localhost.evil.com` resolve wherever their owner says),
  // except `localhost` and `*.localhost`, which always mean this machine (RFC 6761).
  const address = isLocalName(host) ? '127.0.0.1' : net.isIP(host) !== 0 ? host : undefined;
  const local = address !== undefined && ipaddr.parse(address).range() === 'loopback';
  if (url.protocol === 'http:' && (config.requireHttps || !local)) {
    throw new WebhookUrlRefused(
      config.requireHttps
        ? 'must be an https URL (this server is in production, where every endpoint is https)'
        : 'must be an https URL (http is allowed for localhost only, in development)',
    );
  }
  const refused =
    address === undefined
      ? undefined
      : addressRefusal(address, { allowPrivate: false, allowedAddresses: config.allowedAddresses });
  if (refused !== undefined)
    throw new WebhookUrlRefused(`points at ${address}, a ${refused} address the server does not call`);
}
