import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { postgresSignals } from '../../src/changes/signals.js';
import { captureLogs } from '../helpers/logs.js';
import { pgProxy, type PgProxy } from '../helpers/pg-proxy.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';
import { changeOf, openStream } from '../helpers/sse.js';

/**
 * The streams' wake-ups come over a LISTEN connection of their own; here it goes through a proxy
 * that cuts it (the server restarts, a partition). Whatever happens to it, no change is lost: the
 * streams read the history at every heartbeat while it is down, and all at once when it is back.
 */
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

onPostgres('change streams when the LISTEN connection fails', () => {
  let proxy: PgProxy;
  let server: TestServer;
  beforeAll(async () => {
    proxy = await pgProxy(new URL(process.env.TEST_DATABASE_URL!));
    const { logger } = captureLogs();
    server = await startServer({
      changes: { heartbeatMs: 400 },
      changeSignals: postgresSignals(proxy.url, logger, { pingEveryMs: 200, pingTimeoutMs: 300 }),
    });
  });
  afterAll(async () => {
    await server.close();
    await proxy.close();
  });

  async function liveStream() {
    const sub = newUser();
    const token = await server.tokenFor(sub);
    const api = server.client(token);
    const stream = await openStream(`${server.url}/api/v1/changes/stream`, { Authorization: `Bearer ${token}` });
    await new Promise((resolve) => setTimeout(resolve, 300)); // LISTEN is open
    const write = async (title: string) => (await api.POST('/api/v1/tasks', { body: { title } })).data!;
    return { stream, write };
  }

  it('still delivers every change while the connection is refused, by reading at each heartbeat, and promptly once it is back', async () => {
    const { stream, write } = await liveStream();
    try {
      proxy.cut('refuse');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const during = await write('while cut');
      const event = await stream.next(2000); // within a heartbeat or two, not at once
      expect(changeOf(event).task).toEqual(during);
      proxy.restore();
      await new Promise((resolve) => setTimeout(resolve, 1500)); // reconnected (backoff from 250 ms)
      const written = Date.now();
      const after = await write('after');
      expect(changeOf(await stream.next(1000)).task).toEqual(after);
      expect(Date.now() - written).toBeLessThan(350); // woken, not polled
    } finally {
      stream.close();
    }
  });

  it('takes a connection that goes silent (a partition) for lost, and loses no change', async () => {
    const { stream, write } = await liveStream();
    try {
      // From the next ping's reply on, nothing comes back: no error, no close, no notification.
      await proxy.holdFrom('SELECT');
      const during = await write('in the partition');
      expect(changeOf(await stream.next(2500)).task).toEqual(during);
      proxy.release();
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const after = await write('healed');
      expect(changeOf(await stream.next(1000)).task).toEqual(after);
      expect(stream.received).toHaveLength(2);
    } finally {
      stream.close();
    }
  });
});
