import type { Server, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import type { Logger } from '../logger.js';

/** What the shutdown knows of one connection. */
interface Connection {
  /** Requests read from it and not yet answered. */
  inFlight: number;
  /** `socket.bytesRead` when its last response was done; undefined before its first one. */
  idleBytes: number | undefined;
  /** `socket.bytesRead` when last looked at, and since when it has not changed. */
  bytesSeen: number;
  quietSince: number;
}

export interface GracefulShutdown {
  /** True from the signal on: readiness answers 503, every response carries `Connection: close`. */
  stopping(): boolean;
  /** Starts the shutdown (later calls return the same promise); resolves once every connection is closed. */
  shutdown(): Promise<void>;
}

/**
 * Stops `server` without cutting a request that a client has already sent, however late a busy
 * event loop gets to read it. Node's `server.close()` destroys every connection without a parsed
 * request (http-terminator and stoppable end or destroy them the same way), and closing the
 * listener resets every connection still queued in the kernel, which libuv accepts only one per
 * loop iteration (libuv#3696): on a busy process both cut requests already sent (issue 18).
 *
 * From `shutdown()` on: `stopping()` is true (readiness answers 503) and every response, those in
 * flight included, carries `Connection: close`, so Node closes each connection after answering
 * what it has read. The server keeps accepting for `drainMs` (load balancers need time to
 * notice), then closes the listener after a loop iteration that accepted nothing (the queue was
 * empty), without closing a connection. Idle connections are closed only in the check phase
 * (`setImmediate`), right after the poll phase has read and parsed whatever had arrived, and only
 * with nothing in flight, nothing being written and no new byte read: after a response at once,
 * before a first complete request only after `newConnectionGraceMs` of silence (5 s, as Go's
 * `Server.Shutdown`). `drainMs + timeoutMs` after the signal, whatever is left is destroyed
 * (logged at error). The promise resolves once every connection has closed.
 */
export function gracefulShutdown(
  server: Server,
  options: { drainMs: number; timeoutMs: number; logger: Logger; newConnectionGraceMs?: number; sweepEveryMs?: number },
): GracefulShutdown {
  const { drainMs, timeoutMs, logger, newConnectionGraceMs = 5000, sweepEveryMs = 100 } = options;
  const connections = new Map<Socket, Connection>();
  const responses = new Set<ServerResponse>();
  let stopping = false;
  let accepted = false;
  let done: Promise<void> | undefined;

  server.on('connection', (socket: Socket) => {
    accepted = true;
    connections.set(socket, { inFlight: 0, idleBytes: undefined, bytesSeen: socket.bytesRead, quietSince: Date.now() });
    socket.once('close', () => connections.delete(socket));
  });
  // Before the app's listener, so the header is set before any handler can answer.
  server.prependListener('request', (req, res) => {
    if (stopping) res.setHeader('Connection', 'close');
    const socket = req.socket;
    const connection = connections.get(socket);
    responses.add(res);
    if (connection) connection.inFlight += 1;
    res.once('close', () => {
      responses.delete(res);
      if (connection === undefined || (connection.inFlight -= 1) > 0) return;
      connection.idleBytes = connection.bytesSeen = socket.bytesRead;
      connection.quietSince = Date.now();
    });
  });

  /** Closes the connections that are idle now; runs only in the check phase (see above). */
  const closeIdle = () => {
    const now = Date.now();
    for (const [socket, connection] of connections) {
      // Answering (Node closes it after the response), or still flushing the last answer.
      if (connection.inFlight > 0 || socket.writableEnded || socket.writableLength > 0) continue;
      if (socket.bytesRead !== connection.bytesSeen) {
        connection.bytesSeen = socket.bytesRead;
        connection.quietSince = now;
      }
      const idleAfterResponse = connection.idleBytes === socket.bytesRead;
      if (idleAfterResponse || now - connection.quietSince >= newConnectionGraceMs) socket.destroy();
    }
  };

  const shutdown = () => {
    if (done) return done;
    stopping = true;
    for (const res of responses) if (!res.headersSent) res.setHeader('Connection', 'close');
    done = new Promise<void>((resolve) => {
      let listening = true;
      let sweeper: NodeJS.Timeout | undefined;
      const closeListener = () => {
        listening = false;
        // net.Server's close: stops accepting and calls back once every connection has closed,
        // without http.Server's closeIdleConnections().
        NetServer.prototype.close.call(server, () => {
          clearTimeout(deadline);
          clearInterval(sweeper);
          resolve();
        });
      };
      const deadline = setTimeout(() => {
        logger.error('shutdown timed out; closing remaining connections', {
          timeout_ms: timeoutMs,
          connections: connections.size,
        });
        if (listening) closeListener();
        server.closeAllConnections();
        for (const socket of connections.keys()) socket.destroy();
      }, drainMs + timeoutMs);
      const stopListening = () => {
        if (!listening) return;
        // libuv accepts one connection per loop iteration (libuv#3696), and closing the listener
        // resets every connection still queued in the kernel. So close it only after an
        // iteration whose poll phase accepted nothing: the queue was empty then.
        if (accepted) {
          accepted = false;
          setImmediate(stopListening);
          return;
        }
        closeListener();
        logger.info('stopped accepting connections', { open: connections.size });
        closeIdle();
        sweeper = setInterval(() => setImmediate(closeIdle), sweepEveryMs);
      };
      setTimeout(() => {
        accepted = false;
        setImmediate(stopListening);
      }, drainMs);
    });
    return done;
  };

  return { stopping: () => stopping, shutdown };
}
