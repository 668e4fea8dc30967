import { createServer, connect, type Server, type Socket } from 'node:net';

/** One client connection through the proxy and its upstream connection to PostgreSQL. */
interface Link {
  client: Socket;
  upstream: Socket;
  /** Server → client bytes not yet forwarded: whole protocol messages, in order. */
  queue: Buffer[];
  /** A partial message at the end of what the server sent so far. */
  partial: Buffer;
  /** Replies held on this link until this time (a delayed reply and everything behind it). */
  heldUntil: number;
  /** Cut off from the client; the server side stays open and hears nothing more. */
  severed: boolean;
}

/** The tag of a CommandComplete message ('C'): "BEGIN", "INSERT 0 1", "COMMIT", … */
function commandTag(message: Buffer): string | undefined {
  if (message[0] !== 0x43) return undefined;
  return message.subarray(5, message.length - 1).toString('utf8');
}

/**
 * A TCP proxy on loopback between the API and PostgreSQL that reads the protocol's message
 * framing on the way back, so a test can make the network misbehave in chosen ways: refuse or
 * swallow connections, delay the reply to a chosen statement (a BEGIN, a COMMIT) and everything
 * behind it, hold every reply and let them go later, or sever connections so that the client
 * sees them die while the server never hears of it (a partition).
 */
export async function pgProxy(target: URL) {
  let mode: 'forward' | 'refuse' | 'blackhole' = 'forward';
  let holdAll = false;
  const delays: { tag: string; ms: number | 'all'; hit: () => void }[] = [];
  const links = new Set<Link>();
  const strays = new Set<Socket>();

  const flush = (link: Link) => {
    if (holdAll || link.severed || Date.now() < link.heldUntil || link.client.destroyed) return;
    if (link.queue.length > 0) link.client.write(Buffer.concat(link.queue.splice(0)));
  };
  const fromServer = (link: Link, chunk: Buffer) => {
    let data = link.partial.length > 0 ? Buffer.concat([link.partial, chunk]) : chunk;
    while (data.length >= 5) {
      const length = 1 + data.readUInt32BE(1);
      if (data.length < length) break;
      const message = data.subarray(0, length);
      data = data.subarray(length);
      const tag = commandTag(message);
      const delay = tag === undefined ? -1 : delays.findIndex((d) => tag.startsWith(d.tag));
      if (delay >= 0) {
        const [{ ms, hit }] = delays.splice(delay, 1) as [(typeof delays)[number]];
        if (ms === 'all') {
          holdAll = true;
        } else {
          link.heldUntil = Date.now() + ms;
          setTimeout(() => flush(link), ms + 1).unref();
        }
        hit();
      }
      link.queue.push(Buffer.from(message));
    }
    link.partial = Buffer.from(data);
    flush(link);
  };

  const server: Server = createServer((client) => {
    client.on('error', () => undefined);
    if (mode === 'refuse') return void client.destroy();
    if (mode === 'blackhole') {
      strays.add(client); // accepted, never answered: a network that drops everything
      return;
    }
    const upstream = connect(Number(target.port || 5432), target.hostname);
    upstream.on('error', () => undefined);
    const link: Link = { client, upstream, queue: [], partial: Buffer.alloc(0), heldUntil: 0, severed: false };
    links.add(link);
    client.on('data', (chunk) => {
      if (!link.severed) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => fromServer(link, chunk));
    client.on('close', () => {
      if (!link.severed) upstream.destroy();
    });
    upstream.on('close', () => {
      links.delete(link);
      client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    /** `target` with the proxy's host and port (its query parameters, e.g. application_name, kept). */
    url: Object.assign(new URL(target.toString()), { hostname: '127.0.0.1', port: String(port) }).toString(),
    /** Drops every connection and answers new ones as `how` says. */
    cut(how: 'refuse' | 'blackhole') {
      mode = how;
      for (const link of links) link.client.destroy();
    },
    restore() {
      mode = 'forward';
    },
    /**
     * Holds the reply to the next statement whose command tag starts with `tag`, and everything
     * the server sends after it on that connection, for `ms`. Resolves when that reply passes
     * through the proxy (is held).
     */
    delayReply(tag: string, ms: number): Promise<void> {
      return new Promise((hit) => delays.push({ tag, ms, hit }));
    },
    /**
     * Holds every reply on every connection, from the reply to the next statement whose command
     * tag starts with `tag` (itself included) until `release`. Resolves when that reply arrives.
     */
    holdFrom(tag: string): Promise<void> {
      return new Promise((hit) => delays.push({ tag, ms: 'all', hit }));
    },
    release() {
      holdAll = false;
      for (const link of links) flush(link);
    },
    /** Cuts every connection off from its client: the client sees it close, PostgreSQL sees nothing. */
    sever() {
      for (const link of links) {
        link.severed = true;
        link.client.destroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const link of links) {
          link.client.destroy();
          link.upstream.destroy();
        }
        for (const socket of strays) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export type PgProxy = Awaited<ReturnType<typeof pgProxy>>;
