import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { ipKeyGenerator } from 'express-rate-limit';
import type { Config } from '../config.js';

/**
 * The HTTP server, with limits on what a client may hold: Node's defaults let a connection that
 * never finishes its headers live for a minute and a slow request for five (slowloris), and
 * accept any number of connections. Here headers must arrive within `headersTimeoutMs` and the
 * whole request within `requestTimeoutMs` (else 408 and the connection closes; checked every
 * second, not every 30 s), an idle keep-alive connection closes after `keepAliveTimeoutMs`, and
 * connections beyond `maxConnections` (or `maxConnectionsPerIp` from one address) are refused at accept.
 */
export function createHttpServer(limits: Config['http']): Server {
  const server = createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1000,
  });
  server.maxConnections = limits.maxConnections;
  if (limits.maxConnectionsPerIp > 0) limitConnectionsPerAddress(server, limits.maxConnectionsPerIp);
  return server;
}

/**
 * At most `max` connections open at once from one address (HAProxy's per-source limit, nginx's
 * limit_conn): more are closed as they are accepted, so one client cannot take every connection
 * the server allows (MAX_CONNECTIONS) with sockets that send nothing. The address is the peer's:
 * behind a proxy every connection comes from the proxy, which is why TRUST_PROXY turns the default
 * off (the proxy limits its clients).
 */
function limitConnectionsPerAddress(server: Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // An IPv6 peer is its /56, as the rate limiter counts it.
    const address = ipKeyGenerator(socket.remoteAddress ?? '');
    const count = (open.get(address) ?? 0) + 1;
    if (count > max) {
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = open.get(address)! - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

/**
 * Why the server could not take its port, in one line with what to do: a port in use (another
 * server, or an earlier run still going) or one this user may not bind (below 1024). `main`
 * prints it alone, without a stack, and exits 1.
 */
export class ListenFailed extends Error {
  override name = 'ListenFailed';
  constructor(
    readonly code: 'EADDRINUSE' | 'EACCES',
    port: number,
    host: string | undefined,
    cause: unknown,
  ) {
    const where = host === undefined ? `port ${port}` : `${host}:${port}`;
    super(
      code === 'EADDRINUSE'
        ? `Cannot listen on ${where}: it is already in use (another tasks-api, or an earlier run still going?). Stop that process, or set PORT to a free port (PORT=0 picks one).`
        : `Cannot listen on ${where}: permission denied (ports below 1024 need privileges). Set PORT to a port above 1023.`,
      { cause },
    );
  }
}

/** `server.listen`, as a promise; a port in use or refused is a {@link ListenFailed}. */
export function listen(server: Server, port: number, host?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => {
      server.off('listening', listening);
      reject(
        error.code === 'EADDRINUSE' || error.code === 'EACCES'
          ? new ListenFailed(error.code, port, host, error)
          : error,
      );
    };
    const listening = () => {
      server.off('error', failed);
      resolve();
    };
    server.once('error', failed);
    server.once('listening', listening);
    server.listen(port, host);
  });
}
