import { Agent, createServer, request, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import { gracefulShutdown } from '../../src/http/graceful-shutdown.js';
import { captureLogs } from '../helpers/logs.js';

type Timings = { drainMs?: number; timeoutMs?: number; newConnectionGraceMs?: number };

/** A real HTTP server on loopback with the shutdown attached, as main.ts wires it. */
async function serve(handler: RequestListener, timings: Timings = {}) {
  const { logger, lines } = captureLogs('info');
  const server = createServer();
  const shutdown = gracefulShutdown(server, { drainMs: 0, timeoutMs: 10_000, logger, ...timings });
  server.on('request', handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { server, shutdown, lines, port };
}

/** A raw connection the server has accepted, on which nothing has been sent yet. */
async function accepted(server: Server, port: number): Promise<Socket> {
  const seen = new Promise((resolve) => server.once('connection', resolve));
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined); // the tests look at what arrives, or that it closed
  await seen;
  return socket;
}

/** Everything the server sends on `socket` until it closes the connection. */
const readToClose = (socket: Socket) =>
  new Promise<string>((resolve) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('close', () => resolve(text));
  });

const listenerClosed = async (server: Server) => {
  while (server.listening) await new Promise((resolve) => setTimeout(resolve, 5));
};

const get = (port: number, agent: Agent, path: string) =>
  new Promise<{ status: number; headers: IncomingHttpHeaders; reused: boolean }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });

describe('gracefulShutdown', () => {
  it('answers a request sent after the listener closed, on a connection accepted before, with Connection: close', async () => {
    const { server, shutdown, port } = await serve((_req, res) => res.end('late but answered'));
    const socket = await accepted(server, port);
    const received = readToClose(socket);

    const stopped = shutdown.shutdown();
    expect(shutdown.stopping()).toBe(true);
    await listenerClosed(server);
    // http.Server#close() would have destroyed this connection by now: no request had been parsed.
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');

    const response = await received;
    expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(response).toMatch(/\r\nConnection: close\r\n/i);
    expect(response).toContain('late but answered');
    await stopped;
  });

  it('accepts every connection still queued in the kernel before it stops listening, and answers it', async () => {
    const { shutdown, port } = await serve((_req, res) => res.end('answered'));
    const clients = Array.from({ length: 20 }, () => {
      const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
      socket.on('error', () => undefined); // a reset shows as a missing answer
      return readToClose(socket);
    });
    // One loop iteration: the clients have connected, the server has accepted at most one of them
    // (libuv accepts one per iteration); closing the listener now would reset the others.
    await new Promise((resolve) => setImmediate(resolve));

    await shutdown.shutdown();
    const answers = await Promise.all(clients);
    expect(answers.filter((answer) => !answer.endsWith('answered'))).toEqual([]);
  });

  it('answers the next request of an idle keep-alive connection when it arrives just as the shutdown starts', async () => {
    const { shutdown, port } = await serve((req, res) => res.end(req.url));
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined); // a reset shows as a missing answer
    const first = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write('GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await first; // answered and kept alive: the connection is idle
    const received = readToClose(socket);

    // The next request reaches the kernel's buffer, and the shutdown starts before Node reads it;
    // the event loop is busy long enough that the drain timer is due before the next poll phase.
    socket.write('GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const stopped = shutdown.shutdown();
    for (const busyUntil = Date.now() + 5; Date.now() < busyUntil;);

    const response = await received;
    expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(response).toMatch(/\r\nConnection: close\r\n/i);
    expect(response).toContain('/second');
    await stopped;
  });

  it('closes a connection that sends nothing once it has been silent for the grace period', async () => {
    const { server, shutdown, port } = await serve((_req, res) => res.end(), { newConnectionGraceMs: 300 });
    const socket = await accepted(server, port);
    const openedAt = Date.now();
    const received = readToClose(socket);

    await shutdown.shutdown();
    expect(await received).toBe('');
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(300);
  });

  it('lets a request in flight finish with Connection: close, and closes an idle keep-alive connection', async () => {
    let answer!: () => void;
    let reached!: () => void;
    const handlerReached = new Promise<void>((resolve) => (reached = resolve));
    const { server, shutdown, port } = await serve(
      (req, res) => {
        if (req.url !== '/slow') {
          res.end();
          return;
        }
        answer = () => res.end('finished');
        reached();
      },
      { drainMs: 50 },
    );
    const idleAgent = new Agent({ keepAlive: true });
    const busyAgent = new Agent({ keepAlive: true });
    expect((await get(port, idleAgent, '/')).headers.connection).toBe('keep-alive');
    const idleSocket = Object.values(idleAgent.freeSockets).flat()[0]!;
    const idleClosed = new Promise((resolve) => idleSocket.once('close', resolve));
    const inFlight = get(port, busyAgent, '/slow');
    await handlerReached;

    const stopped = shutdown.shutdown();
    await listenerClosed(server);
    await idleClosed; // closed by the server while the other request is still being answered
    answer();
    const answered = await inFlight;
    expect(answered.status).toBe(200);
    expect(answered.headers.connection).toBe('close');
    await stopped;
    idleAgent.destroy();
    busyAgent.destroy();
  });

  it('destroys what is left at the deadline and logs it at error', async () => {
    const { server, shutdown, port, lines } = await serve(() => undefined, { timeoutMs: 200 });
    const socket = await accepted(server, port);
    const received = readToClose(socket);
    const parsed = new Promise((resolve) => server.once('request', resolve));
    socket.write('GET /never-answered HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await parsed;

    const startedAt = Date.now();
    await shutdown.shutdown();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(200);
    expect(await received).toBe('');
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'shutdown timed out; closing remaining connections',
        timeout_ms: 200,
      }),
    );
  });
});
