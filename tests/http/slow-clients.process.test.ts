import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { migratedPgliteDir, startMain } from '../helpers/process.js';

const dataDir = migratedPgliteDir('tasks-slow-');
let server: Awaited<ReturnType<typeof startMain>>;
let port: number;
beforeAll(async () => {
  server = await startMain({
    JWT_SECRET: randomBytes(32).toString('base64url'),
    PGLITE_DIR: dataDir,
    CLIENT_HEADERS_TIMEOUT_MS: '1000',
    CLIENT_REQUEST_TIMEOUT_MS: '2000',
    KEEP_ALIVE_TIMEOUT_MS: '500',
    MAX_CONNECTIONS: '20',
  });
  port = Number(new URL(server.url).port);
}, 60_000); // starting a server process: startMain allows it 45 s on a loaded machine
afterAll(async () => {
  server.child.kill('SIGTERM');
  await server.exited;
  rmSync(dataDir, { recursive: true, force: true });
});

/** A raw connection doing `act`, and when (ms after connecting) the server closed it, with what it said. */
function client(act: (socket: Socket) => void = () => undefined): Promise<{ ms: number; said: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    let said = '';
    const socket = connect(port, '127.0.0.1', () => act(socket));
    socket.on('data', (chunk) => (said += chunk.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ ms: Date.now() - started, said }));
  });
}
const drip = (socket: Socket, head: string, byte: string) => {
  socket.write(head);
  const timer = setInterval(() => socket.writable && socket.write(byte), 300);
  socket.on('close', () => clearInterval(timer));
};

describe('clients that hold a connection without finishing a request', () => {
  it('closes a connection that sends nothing, or headers that never end, within seconds (408)', async () => {
    const [silent, partial, dripping] = await Promise.all([
      client(),
      client((s) => s.write('GET /health/live HTTP/1.1\r\nHost: x\r\n')),
      client((s) => drip(s, 'GET /health/live HTTP/1.1\r\n', 'X-Slow: 1\r\n')),
    ]);
    for (const { ms } of [silent, partial, dripping]) expect(ms).toBeLessThan(4000);
    expect(partial.said).toMatch(/^HTTP\/1\.1 408/);
    expect(dripping.said).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a request whose body trickles in slower than the request timeout allows', async () => {
    const slow = await client((s) =>
      drip(
        s,
        'POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
        ' ',
      ),
    );
    expect(slow.ms).toBeGreaterThan(1500);
    expect(slow.ms).toBeLessThan(5000);
  });

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const idle = await client((s) => s.write('GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(idle.said).toMatch(/^HTTP\/1\.1 200/);
    expect(idle.ms).toBeLessThan(3000);
  });

  it('refuses connections beyond MAX_CONNECTIONS at once, and serves again once they are gone', async () => {
    const held = Array.from({ length: 25 }, () => client());
    const closed = await Promise.all(held);
    expect(closed.filter(({ ms }) => ms < 500).length).toBeGreaterThanOrEqual(5);
    expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
  });
});
