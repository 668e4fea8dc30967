import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net, { type LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  RequestFilteringHttpAgent,
  RequestFilteringHttpsAgent,
  type RequestFilteringAgentOptions,
} from 'request-filtering-agent';
import { addressRules, type AddressPolicy } from './address-rules.js';

/** `allowPrivate` and `allowedAddresses` (the {@link AddressPolicy}) are the SSRF rules' options, decided in address-rules.ts. */
export interface SenderOptions extends AddressPolicy {
  /** The whole attempt: connect, response headers and the (capped) body read. */
  timeoutMs: number;
  /** At most this much of a response body is read; then the connection is destroyed. */
  maxResponseBytes: number;
  /** The resolver (node:net `lookup`); tests resolve made-up names with it. Its answer is what is checked and connected to. */
  lookup?: LookupFunction;
  /** Default `tasks-api-webhooks/1`. */
  userAgent?: string;
}

export interface SendResult {
  /** A 2xx answer. */
  ok: boolean;
  statusCode?: number;
  durationMs: number;
  error?: string;
  /** From `Retry-After` (seconds or HTTP-date) of a 429 or 503. */
  retryAfterSeconds?: number;
  /** Not sent: the destination (or the URL) is one this server does not call. */
  refused?: boolean;
  /** For the server's log only, never shown to the user: the address a refused name resolved to. */
  detail?: string;
}

export interface WebhookSender {
  /** One POST; never throws (every failure is a `SendResult`). */
  send(url: string, body: string, headers: Record<string, string>): Promise<SendResult>;
  /** Destroys the keep-alive connections. */
  close(): void;
}

/**
 * A destination address the sender will not connect to. Raised inside the connection's DNS lookup,
 * so the decision is made on the very address the socket would connect to (DNS rebinding cannot
 * swap it afterwards), and reported as a refused `SendResult`.
 */
export class DestinationRefused extends Error {
  override name = 'DestinationRefused';
  readonly code = 'WEBHOOK_DESTINATION_REFUSED';
  /**
   * The message goes into the user's delivery log, so for a host name it does not say what the
   * name resolved to: that would let a user map the server's internal DNS (registering
   * `db.internal`, reading back its address). The address is in `detail`, for the server's log.
   */
  constructor(
    readonly address: string,
    readonly reason: string,
    hostname?: string,
  ) {
    super(
      hostname === undefined || hostname === address
        ? `destination refused: ${address} is a private/reserved address (${reason})`
        : `destination refused: ${hostname} resolves to a private or reserved address`,
    );
  }
}

/**
 * Exact addresses for request-filtering-agent's own deny list. Its list matching is by exact string
 * for an address and throws-then-warns for a CIDR of the other IP family (a console.warn with a
 * stack on every connection), so it gets only exact addresses: the metadata services, in the forms
 * a resolver returns them. The ranges are refused by our check, which runs first.
 */
const METADATA_ADDRESSES = [
  '169.254.169.254',
  '169.254.170.2',
  '100.100.100.200',
  'fd00:ec2::254',
  '::ffff:169.254.169.254',
  '::ffff:a9fe:a9fe',
];

/** Wraps a resolver so that an answer with any refused address fails the lookup, before any socket connects. */
function guardedLookup(resolve: LookupFunction, refusal: (address: string) => string | undefined): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, options, (error, address, family) => {
      if (error) return callback(error, address, family);
      for (const candidate of typeof address === 'string' ? [address] : address.map((a) => a.address)) {
        const why = refusal(candidate);
        if (why !== undefined) return callback(new DestinationRefused(candidate, why, hostname), '', family);
      }
      callback(null, address, family);
    });
  };
}

/** request-filtering-agent's refusal: a plain Error whose message is all there is to go by (`DNS lookup <address>(family:…, host:<name>) is not allowed…`). */
const LIBRARY_REFUSAL = /^DNS lookup (\S+?)\(.*?host:([^)]*)\).*is not allowed/;

/** A short, stable description of a network error; refusals are told apart so they are not retried. */
function failure(error: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] }): Omit<SendResult, 'durationMs'> {
  if (error instanceof DestinationRefused)
    return {
      ok: false,
      refused: true,
      error: error.message,
      detail: `refused address ${error.address} (${error.reason})`,
    };
  if (error.code === 'WEBHOOK_DESTINATION_REFUSED') return { ok: false, refused: true, error: error.message };
  const library = LIBRARY_REFUSAL.exec(error.message);
  if (library)
    return {
      ok: false,
      refused: true,
      error: new DestinationRefused(library[1]!, 'refused by request-filtering-agent', library[2]).message,
      detail: `refused address ${library[1]}`,
    };
  const code = error.code ?? error.errors?.[0]?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    EPIPE: 'connection reset',
    ETIMEDOUT: 'connect timed out',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'DNS lookup failed',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
  };
  if (code !== undefined && known[code] !== undefined) return { ok: false, error: `${known[code]} (${code})` };
  if (code !== undefined && /CERT|TLS|SSL/.test(code)) return { ok: false, error: `TLS error (${code})` };
  return { ok: false, error: code ?? error.message.slice(0, 200) };
}

/** Seconds from a `Retry-After` value: delay-seconds or an HTTP-date (in the past: 0). */
function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** What a response's status means for the attempt. */
function outcomeOf(response: http.IncomingMessage): Omit<SendResult, 'durationMs'> {
  const statusCode = response.statusCode ?? 0;
  if (statusCode >= 200 && statusCode < 300) return { ok: true, statusCode };
  if (statusCode >= 300 && statusCode < 400) return { ok: false, statusCode, error: 'redirect not followed' };
  const header = response.headers['retry-after'];
  const retryAfterSeconds = statusCode === 429 || statusCode === 503 ? parseRetryAfter(header, Date.now()) : undefined;
  return retryAfterSeconds === undefined ? { ok: false, statusCode } : { ok: false, statusCode, retryAfterSeconds };
}

/**
 * Sends webhook POSTs to URLs that users chose, so every connection goes through an SSRF guard:
 * each address a name resolves to (through `lookup`, at connect time, on every new connection — so
 * a DNS answer that changes after the URL was checked is caught) and every IP-literal host is
 * checked, and a private, loopback, link-local, metadata, CGNAT, multicast or other reserved
 * address is refused before a socket connects. `allowedAddresses` wins over every rule;
 * `allowPrivate` (development) lets loopback and private ranges through but never the
 * always-refused ones (link-local and metadata among them).
 *
 * The connections are made by request-filtering-agent's agents, which call our guarded resolver
 * and then check its answer again against their own rules (non-unicast refused unless private
 * addresses are allowed; the metadata addresses denied exactly). Our check is the one that decides
 * and names the address; theirs is a second layer.
 *
 * Redirects are not followed (a 3xx is a failed attempt), only `maxResponseBytes` of an answer is
 * read, the whole attempt is bounded by `timeoutMs`, and connections are kept alive per sender.
 */
export function webhookSender(options: SenderOptions): WebhookSender {
  const refusal = addressRules(options);
  const allowList = (options.allowedAddresses ?? []).length > 0;
  const lookup = guardedLookup(options.lookup ?? dns.lookup, refusal);
  const userAgent = options.userAgent ?? 'tasks-api-webhooks/1';

  const filter: RequestFilteringAgentOptions = {
    // With an allow list their range check would refuse what it allows (and their CIDR matching
    // warns across IP families), so then only our check judges ranges.
    allowPrivateIPAddress: options.allowPrivate || allowList,
    allowMetaIPAddress: false,
    allowIPAddressList: [],
    denyIPAddressList: METADATA_ADDRESSES.filter((address) => refusal(address) !== undefined),
  };
  const agentOptions = { keepAlive: true, lookup, ...filter };
  const agents = {
    'http:': new RequestFilteringHttpAgent(agentOptions),
    'https:': new RequestFilteringHttpsAgent(agentOptions),
  };

  async function send(url: string, body: string, headers: Record<string, string>): Promise<SendResult> {
    const started = performance.now();
    const result = (r: Omit<SendResult, 'durationMs'>): SendResult => ({
      ...r,
      durationMs: performance.now() - started,
    });

    let target: URL;
    try {
      target = new URL(url);
    } catch {
      return result({ ok: false, refused: true, error: 'not an absolute URL' });
    }
    const protocol = target.protocol;
    if (protocol !== 'http:' && protocol !== 'https:')
      return result({ ok: false, refused: true, error: `unsupported URL scheme ${protocol}` });
    const hostname = target.hostname.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(hostname) !== 0) {
      // No lookup happens for an IP literal: it is judged here (the agent checks it again).
      const why = refusal(hostname);
      if (why !== undefined) return result(failure(new DestinationRefused(hostname, why)));
    }

    return new Promise<SendResult>((resolve) => {
      let settled = false;
      let response: http.IncomingMessage | undefined;
      const finish = (r: Omit<SendResult, 'durationMs'>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result(r));
      };
      const request = (protocol === 'https:' ? https : http).request({
        protocol,
        hostname,
        port: target.port === '' ? undefined : Number(target.port),
        path: `${target.pathname}${target.search}`,
        method: 'POST',
        agent: agents[protocol],
        headers: {
          ...headers,
          'content-type': 'application/json',
          'user-agent': userAgent,
          'content-length': String(Buffer.byteLength(body)),
        },
      });
      const timer = setTimeout(() => {
        finish({
          ok: false,
          error: 'timeout',
          ...(response?.statusCode === undefined ? {} : { statusCode: response.statusCode }),
        });
        request.destroy();
      }, options.timeoutMs);
      request.on('error', (error) => finish(failure(error)));
      request.on('response', (res) => {
        response = res;
        const outcome = outcomeOf(res);
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received >= options.maxResponseBytes) {
            finish(outcome);
            res.destroy(); // the rest is not read: the connection goes, not back to the pool
          }
        });
        res.on('end', () => finish(outcome));
        res.on('error', () => finish(outcome)); // cut off after the status arrived: the status still stands
      });
      request.end(body);
    });
  }

  return {
    send,
    close(): void {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}

/**
 * Whether a failed attempt is worth repeating: network errors, timeouts, 408, 429 and 5xx are
 * (the receiver may be back later); a refused destination, a redirect and any other 4xx are not
 * (the same request would get the same answer).
 */
export function isRetryable(result: SendResult): boolean {
  if (result.ok || result.refused) return false;
  if (result.error === 'timeout' || result.statusCode === undefined) return true;
  return result.statusCode === 408 || result.statusCode === 429 || result.statusCode >= 500;
}
