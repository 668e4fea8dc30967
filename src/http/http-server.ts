import { createServer, type Server } from 'node:http';
import type { Config } from '../config.js';

/**
 * The HTTP server, with limits on what a client may hold: Node's defaults let a connection that
 * never finishes its headers live for a minute and a slow request for five (slowloris), and
 * accept any number of connections. Here headers must arrive within `headersTimeoutMs` and the
 * whole request within `requestTimeoutMs` (else 408 and the connection closes; checked every
 * second, not every 30 s), an idle keep-alive connection closes after `keepAliveTimeoutMs`, and
 * connections beyond `maxConnections` are refused at accept.
 */
export function createHttpServer(limits: Config['http']): Server {
  const server = createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1000,
  });
  server.maxConnections = limits.maxConnections;
  return server;
}
