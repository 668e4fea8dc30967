import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import dns from 'node:dns';
import { once } from 'node:events';
import net, { type AddressInfo, type LookupFunction } from 'node:net';
import { isRetryable, webhookSender, type SenderOptions, type SendResult } from '../../src/webhooks/sender.js';
import { generateSecret, signatureHeaders } from '../../src/webhooks/signing.js';
import { refusedPort } from '../helpers/refused-port.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/**
 * The sender against a real receiver on loopback, and its SSRF guard through the DNS lookup hook.
 *
 * Nothing here may reach an address other than loopback. Forbidden addresses only ever come out of
 * a made-up resolver; and a tripwire on `net.Socket#connect` (below) sends any connection this
 * process tries to make to anything but 127.0.0.1 to 127.0.0.1 — to a counting server at the same
 * port — and records it. So if the guard failed, the attempt would land on loopback, be counted
 * and fail the test, and never go to the network.
 */

const LOOPBACK = ['127.0.0.1/32'];

/** Diverts every TCP connection not to 127.0.0.1 to 127.0.0.1 (same port), recording where it was going. */
function loopbackTripwire() {
  const diverted: string[] = [];
  // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be called with `.apply(this, …)` by the replacement, and put back by restore()
  const original = net.Socket.prototype.connect;
  const divert = (address: string) => {
    if (address === '127.0.0.1') return address;
    diverted.push(address);
    return '127.0.0.1';
  };
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    const first = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];
    if (first !== null && typeof first === 'object' && !('path' in first && (first as { path?: string }).path)) {
      const options = first as { host?: string; lookup?: LookupFunction };
      if (typeof options.host === 'string' && net.isIP(options.host) !== 0) options.host = divert(options.host);
      const resolve = options.lookup ?? dns.lookup;
      options.lookup = (hostname, lookupOptions, callback) =>
        resolve(hostname, lookupOptions, (error, address, family) => {
          if (error) return callback(error, address, family);
          if (typeof address === 'string') return callback(null, divert(address), 4);
          callback(
            null,
            address.map((a) => ({ address: divert(a.address), family: 4 })),
          );
        });
    }
    return original.apply(this, args as Parameters<typeof original>);
  };
  return { diverted, restore: () => void (net.Socket.prototype.connect = original) };
}

/** A loopback TCP server that only counts the connections it gets. */
async function connectionCounter() {
  const server = net.createServer((socket) => socket.destroy());
  let count = 0;
  server.on('connection', () => (count += 1));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    count: () => count,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A made-up resolver: `victim.test` is `addresses` (all of them, or the first, as asked); any other name does not exist. */
function resolver(addresses: string[]) {
  const asked: string[] = [];
  const lookup: LookupFunction = (hostname, options, callback) => {
    asked.push(hostname);
    if (hostname !== 'victim.test')
      return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '', 4);
    const all = addresses.map((address) => ({ address, family: net.isIP(address) }));
    if (options.all) callback(null, all);
    else callback(null, all[0]!.address, all[0]!.family);
  };
  return { lookup, asked };
}

let receiver: Receiver;
let counter: Awaited<ReturnType<typeof connectionCounter>>;
let tripwire: ReturnType<typeof loopbackTripwire>;
const senders: Array<{ close(): void }> = [];
const sender = (options: Partial<SenderOptions> = {}) => {
  const made = webhookSender({
    timeoutMs: 3000,
    maxResponseBytes: 65536,
    allowPrivate: false,
    allowedAddresses: LOOPBACK,
    ...options,
  });
  senders.push(made);
  return made;
};

beforeAll(async () => {
  tripwire = loopbackTripwire();
  receiver = await startReceiver();
  counter = await connectionCounter();
});
afterEach(() => {
  for (const made of senders.splice(0)) made.close();
  receiver.mode('ok');
  expect(tripwire.diverted.splice(0)).toEqual([]); // nothing tried to leave loopback
});
afterAll(async () => {
  await receiver.close();
  await counter.close();
  tripwire.restore();
});

const post = (s: ReturnType<typeof sender>, url = `${receiver.url}/hook`, body = '{"type":"test"}') =>
  s.send(url, body, {});

describe('the loopback tripwire (test setup)', () => {
  it('sends a connection to another address to 127.0.0.1 instead, literal or resolved', async () => {
    // ::1 is loopback too, so this is safe even without the tripwire; with it, it lands on the counter.
    const before = counter.count();
    for (const options of [{ host: '::1' }, { host: 'victim.test', lookup: resolver(['::1']).lookup }]) {
      const socket = net.connect({ port: counter.port, ...options });
      await once(socket, 'connect');
      socket.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(counter.count() - before).toBe(2);
    expect(tripwire.diverted.splice(0)).toEqual(['::1', '::1']);
  });
});

describe('webhookSender, against a receiver on loopback', () => {
  it('POSTs the JSON body with the signing headers, and a 2xx is ok', async () => {
    const secret = generateSecret();
    receiver.setSecret('signed', secret);
    const body = JSON.stringify({ id: 'msg_1', type: 'task.created' });
    const headers = signatureHeaders({ id: 'msg_1', timestamp: new Date(), body, secrets: [secret] });
    const result = await sender().send(`${receiver.url}/signed?x=1`, body, headers);
    expect(result).toMatchObject({ ok: true, statusCode: 200 });
    expect(result.error).toBeUndefined();
    const [got] = receiver.deliveries.filter((d) => d.key === 'signed');
    expect(got).toMatchObject({ verified: true, raw: body, id: 'msg_1' });
    expect(got!.headers).toMatchObject({
      'content-type': 'application/json',
      'user-agent': 'tasks-api-webhooks/1',
      ...headers,
    });
  });

  it('keeps the connection alive between sends', async () => {
    const s = sender();
    const before = receiver.connections();
    await post(s);
    await post(s);
    expect(receiver.connections() - before).toBe(1);
  });

  it('reports a 500 as failed and retryable', async () => {
    receiver.mode('500');
    const result = await post(sender());
    expect(result).toMatchObject({ ok: false, statusCode: 500 });
    expect(isRetryable(result)).toBe(true);
  });

  it('reads Retry-After of a 429 in seconds', async () => {
    receiver.mode('429', { retryAfter: '120' });
    const result = await post(sender());
    expect(result).toMatchObject({ ok: false, statusCode: 429, retryAfterSeconds: 120 });
    expect(isRetryable(result)).toBe(true);
  });

  it('reads Retry-After of a 503 as an HTTP-date', async () => {
    receiver.mode('503-retry-after', { retryAfter: new Date(Date.now() + 90_000).toUTCString() });
    const result = await post(sender());
    expect(result).toMatchObject({ ok: false, statusCode: 503 });
    expect(result.retryAfterSeconds).toBeGreaterThanOrEqual(88);
    expect(result.retryAfterSeconds).toBeLessThanOrEqual(90);
  });

  it.each(['400', '410'] as const)('reports a %s as failed for good', async (status) => {
    receiver.mode(status);
    const result = await post(sender());
    expect(result).toMatchObject({ ok: false, statusCode: Number(status) });
    expect(isRetryable(result)).toBe(false);
  });

  it('does not follow a 302: one request, a failed attempt, not retried', async () => {
    receiver.mode('redirect');
    const before = receiver.deliveries.length;
    const result = await post(sender({ allowPrivate: true }), `${receiver.url}/redirected`);
    expect(result).toMatchObject({ ok: false, statusCode: 302, error: 'redirect not followed' });
    expect(isRetryable(result)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(receiver.deliveries.length - before).toBe(1);
  });

  it('stops reading a huge answer at maxResponseBytes and drops the connection', async () => {
    receiver.mode('huge');
    const result = await post(sender({ maxResponseBytes: 65536 }), `${receiver.url}/huge`);
    expect(result).toMatchObject({ ok: true, statusCode: 200 });
    expect(result.durationMs).toBeLessThan(1500);
    const [huge] = receiver.deliveries.filter((d) => d.key === 'huge');
    await receiver.waitFor(() => huge!.sentBytes !== undefined, 2000); // the receiver saw the client go away
    expect(huge!.sentBytes).toBeLessThan(10 * 1024 * 1024);
  });

  it('gives up after timeoutMs on a receiver that never answers, and that is retryable', async () => {
    receiver.mode('timeout');
    const result = await post(sender({ timeoutMs: 300 }));
    expect(result).toMatchObject({ ok: false, error: 'timeout' });
    expect(result.statusCode).toBeUndefined();
    expect(result.durationMs).toBeGreaterThanOrEqual(290);
    expect(result.durationMs).toBeLessThan(1500);
    expect(isRetryable(result)).toBe(true);
  });

  it('gives up after timeoutMs on a receiver slower than that', async () => {
    receiver.mode('slow', { delayMs: 1000 });
    const result = await post(sender({ timeoutMs: 300 }));
    expect(result).toMatchObject({ ok: false, error: 'timeout' });
  });

  it('reports connection refused on a closed loopback port as a retryable network error', async () => {
    const result = await post(sender(), `http://127.0.0.1:${await refusedPort()}/`);
    expect(result).toMatchObject({ ok: false, error: 'connection refused (ECONNREFUSED)' });
    expect(result.refused).toBeUndefined();
    expect(isRetryable(result)).toBe(true);
  });

  it('reports a name that does not resolve as a retryable network error', async () => {
    const result = await post(sender({ lookup: resolver([]).lookup }), 'http://nowhere.test/');
    expect(result).toMatchObject({ ok: false, error: 'host not found (ENOTFOUND)' });
    expect(isRetryable(result)).toBe(true);
  });
});

describe('webhookSender SSRF guard', () => {
  const forbidden = [
    '127.0.0.1',
    '10.0.0.1',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '::1',
    'fc00::1',
    'fe80::1',
    'fd00:ec2::254',
    '::ffff:127.0.0.1',
    '::ffff:169.254.169.254',
    // IPv6 forms that carry or reach an IPv4 address, and reserved IPv6 ranges.
    '2002:7f00:1::1',
    '2001:0:4136:e378::1',
    '64:ff9b::7f00:1',
    '64:ff9b:1::a9fe:a9fe',
    '::7f00:1',
    '::ffff:0:7f00:1',
    'fec0::1',
    '100::1',
    '2001:db8::1',
  ];

  /** Sends to victim.test (at the counter's port) with `options`; the resolver says `addresses`. */
  async function sendToVictim(addresses: string[], options: Partial<SenderOptions>) {
    const { lookup, asked } = resolver(addresses);
    const before = counter.count();
    const result = await sender({ allowedAddresses: [], lookup, ...options }).send(
      `http://victim.test:${counter.port}/hook`,
      '{}',
      {},
    );
    await new Promise((resolve) => setTimeout(resolve, 50)); // room for a connection to show up
    return { result, asked, connections: counter.count() - before };
  }

  /** `literal`: the URL's host was the address itself, so the message may name it. */
  const expectRefused = (result: SendResult, address: string, literal = false) => {
    expect(result).toMatchObject({ ok: false, refused: true });
    // For a name, the user's delivery log does not say what it resolved to (that would map the
    // server's internal DNS); the server's log has the address.
    expect(result.error).toMatch(
      literal
        ? `destination refused: ${address} is a private/reserved address (`
        : /^destination refused: victim\.test resolves to a private or reserved address$/,
    );
    expect(result.detail).toContain(`refused address ${address} `);
    expect(result.statusCode).toBeUndefined();
    expect(isRetryable(result)).toBe(false);
  };

  it.each(forbidden)('refuses victim.test resolving to %s, before any connection', async (address) => {
    const { result, asked, connections } = await sendToVictim([address], { allowPrivate: false });
    expect(asked).toEqual(['victim.test']); // the refusal is about what the lookup answered
    expectRefused(result, address);
    expect(connections).toBe(0);
  });

  it.each([
    '169.254.169.254',
    'fd00:ec2::254',
    '::ffff:169.254.169.254',
    'fe80::1',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
  ])('still refuses %s when private addresses are allowed (development)', async (address) => {
    const { result, connections } = await sendToVictim([address], { allowPrivate: true });
    expectRefused(result, address);
    expect(connections).toBe(0);
  });

  it('lets loopback through when private addresses are allowed (development)', async () => {
    const { lookup } = resolver(['127.0.0.1']);
    const result = await sender({ allowPrivate: true, allowedAddresses: [], lookup }).send(
      `http://victim.test:${receiver.port}/dev`,
      '{}',
      {},
    );
    expect(result).toMatchObject({ ok: true, statusCode: 200 });
  });

  it('refuses a name with several addresses when one of them is forbidden', async () => {
    // 127.0.0.1 is allowed here; 10.0.0.1 is not: the whole answer is refused, so no connection is made to either.
    const { result, connections } = await sendToVictim(['127.0.0.1', '10.0.0.1'], { allowedAddresses: LOOPBACK });
    expectRefused(result, '10.0.0.1');
    expect(connections).toBe(0);
  });

  it.each([`[::ffff:7f00:1]`, '127.0.0.1', '[::1]', '0.0.0.0', '169.254.169.254'])(
    'refuses the IP-literal URL http://%s:PORT/',
    async (host) => {
      const before = counter.count();
      const result = await sender({ allowedAddresses: [] }).send(`http://${host}:${counter.port}/`, '{}', {});
      await new Promise((resolve) => setTimeout(resolve, 50));
      expectRefused(result, host.replace(/^\[(.*)\]$/, '$1'), true);
      expect(counter.count() - before).toBe(0);
    },
  );

  it('checks each new connection: a name re-pointed at a forbidden address after a good send is refused (DNS rebinding)', async () => {
    let answers = ['127.0.0.1'];
    const lookup: LookupFunction = (hostname, options, callback) =>
      resolver(answers).lookup(hostname, options, callback);
    const s = sender({ allowedAddresses: LOOPBACK, lookup });
    const before = receiver.deliveries.length;
    expect(await s.send(`http://victim.test:${receiver.port}/rebind`, '{}', {})).toMatchObject({ ok: true });
    answers = ['10.0.0.1'];
    receiver.dropConnections(); // the next send needs a new connection, hence a new lookup
    await new Promise((resolve) => setTimeout(resolve, 50));
    expectRefused(await s.send(`http://victim.test:${receiver.port}/rebind`, '{}', {}), '10.0.0.1');
    expect(receiver.deliveries.length - before).toBe(1);
  });

  it('refuses URLs that are not http(s) without connecting', async () => {
    const result = await sender().send('file:///etc/passwd', '{}', {});
    expect(result).toMatchObject({ ok: false, refused: true });
  });
});

describe('isRetryable', () => {
  it.each<[Partial<SendResult>, boolean]>([
    [{ ok: true, statusCode: 200 }, false],
    [{ ok: false, error: 'connection reset (ECONNRESET)' }, true],
    [{ ok: false, error: 'timeout' }, true],
    [{ ok: false, statusCode: 200, error: 'timeout' }, true],
    [{ ok: false, statusCode: 408 }, true],
    [{ ok: false, statusCode: 429 }, true],
    [{ ok: false, statusCode: 502 }, true],
    [{ ok: false, statusCode: 302, error: 'redirect not followed' }, false],
    [{ ok: false, statusCode: 404 }, false],
    [{ ok: false, statusCode: 410 }, false],
    [
      { ok: false, refused: true, error: 'destination refused: 10.0.0.1 is a private/reserved address (private)' },
      false,
    ],
  ])('%j → %s', (result, expected) => {
    expect(isRetryable({ durationMs: 1, ...result } as SendResult)).toBe(expected);
  });
});
