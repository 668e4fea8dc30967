import ipaddr from 'ipaddr.js';

/*
 * The SSRF address rules: which IP addresses a webhook may never be sent to. Destinations are
 * decided here, once, for both places that judge one: registration (destination.ts, for an
 * IP-literal or localhost host) and the sender (every address a name resolves to, at connect
 * time). This module imports nothing of the app, so the sender and the registration check share
 * the rules without importing each other.
 */

/** Which addresses a caller lets through beyond the public unicast ones. */
export interface AddressPolicy {
  /** Development: loopback and private ranges may be called. Link-local, metadata and the other always-refused ranges still are not. */
  allowPrivate: boolean;
  /** Addresses or CIDR ranges always allowed, before any other rule (e.g. `['127.0.0.1/32']` in tests). */
  allowedAddresses?: string[];
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Range = [Address, number];

const cidr = (range: string): Range =>
  range.includes('/')
    ? ipaddr.parseCIDR(range)
    : [ipaddr.parse(range), ipaddr.parse(range).kind() === 'ipv4' ? 32 : 128];
const inRange = (address: Address, [network, bits]: Range) =>
  address.kind() === network.kind() && address.match([network, bits] as [typeof address, number]);

/**
 * Refused even when `allowPrivate` is on (only `allowedAddresses` lets one through): cloud metadata
 * lives here, and some of these ipaddr.js calls `unicast`, or `allowPrivate` would skip them.
 * IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is refused as a whole rather than judged by the IPv4 inside:
 * no public receiver needs it, and it is the classic way round a check that only knows IPv4.
 */
const ALWAYS_REFUSED: ReadonlyArray<[Range, string]> = (
  [
    ['0.0.0.0/8', 'unspecified'],
    ['::/128', 'unspecified'],
    ['169.254.0.0/16', 'link-local, cloud metadata'],
    ['fe80::/10', 'link-local'],
    ['fd00:ec2::254/128', 'cloud metadata'],
    ['100.64.0.0/10', 'carrier-grade NAT'],
    ['224.0.0.0/4', 'multicast'],
    ['ff00::/8', 'multicast'],
    ['240.0.0.0/4', 'reserved, broadcast'],
    ['::ffff:0:0/96', 'IPv4-mapped'],
    ['::ffff:0:0:0/96', 'IPv4-translated'],
    ['64:ff9b::/96', 'NAT64'],
    ['64:ff9b:1::/48', 'NAT64'],
  ] as const
).map(([range, why]) => [cidr(range), why]);

/** `::a.b.c.d` (deprecated IPv4-compatible IPv6), which ipaddr.js calls unicast; `::1` and `::` are judged as themselves. */
const IPV4_COMPATIBLE = cidr('::/96');

/**
 * The rule of `policy` as a function: why an address (an IP address, IPv6 without brackets) is
 * refused, or undefined when it may be called. The allowed ranges are parsed once, here, so a
 * malformed entry fails when the rule is made, not on some later connection.
 */
export function addressRules(policy: AddressPolicy): (address: string) => string | undefined {
  const allowed = (policy.allowedAddresses ?? []).map(cidr);
  return (address) => refusalOf(address, policy.allowPrivate, allowed);
}

/**
 * Why the sender would refuse to connect to `address` (an IP address, IPv6 without brackets), or
 * undefined when it may: registration applies the same rule to IP-literal hosts.
 */
export function addressRefusal(address: string, policy: AddressPolicy): string | undefined {
  return addressRules(policy)(address);
}

/** Why `address` is refused under these options, or undefined when it may be called. */
function refusalOf(address: string, allowPrivate: boolean, allowed: readonly Range[]): string | undefined {
  if (!ipaddr.isValid(address)) return 'not an IP address';
  const ip = ipaddr.parse(address);
  if (allowed.some((range) => inRange(ip, range))) return undefined;
  const denied = ALWAYS_REFUSED.find(([range]) => inRange(ip, range));
  if (denied) return denied[1];
  const range = ip.range();
  if (ip.kind() === 'ipv6' && inRange(ip, IPV4_COMPATIBLE) && range !== 'loopback') return 'IPv4-compatible';
  if (!allowPrivate && range !== 'unicast') return range;
  return undefined;
}
