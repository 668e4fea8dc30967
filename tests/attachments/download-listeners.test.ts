import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runInThisContext } from 'node:vm';
import { CHUNK_BYTES } from '../../src/attachments/postgres-store.js';
import { defaultConfig } from '../../src/config.js';
import { gracefulShutdown } from '../../src/http/graceful-shutdown.js';
import { createHttpServer } from '../../src/http/http-server.js';
import { startAttachmentServer, STORAGES, type AttachmentServer } from '../helpers/attachment-stores.js';
import { buildTask } from '../helpers/factories.js';
import { png, sha256 } from '../helpers/files.js';
import { captureLogs } from '../helpers/logs.js';
import { newUser } from '../helpers/server.js';

/**
 * The process itself. Jest gives a test file a copy of `process` whose events are its own: Node
 * emits its warnings on the real one, which is the global of the context outside the test's.
 */
const realProcess = runInThisContext('process') as NodeJS.Process;

/** A file of several of the PostgreSQL store's chunks (and several of its reads), and a part of one. */
const bytes = png(5 * CHUNK_BYTES + 12_345);

/**
 * Downloads are sent as main.ts serves them: the test server's app behind the production HTTP
 * server with graceful shutdown, which (like every middleware that waits for a response to close)
 * holds a `close` listener of its own on every response. The server runs in this process, so a
 * warning it emits (MaxListenersExceededWarning) reaches this process's 'warning' listeners.
 */
describe.each(STORAGES)('a download of several chunks, stored in %s', (storage) => {
  let running: AttachmentServer;
  let http: Server;
  let url: string;
  beforeAll(async () => {
    running = await startAttachmentServer(storage, {
      attachments: { maxBytes: 8 * CHUNK_BYTES, quotaBytes: 16 * CHUNK_BYTES },
    });
    const config = defaultConfig();
    http = createHttpServer(config.http);
    gracefulShutdown(http, { drainMs: 0, timeoutMs: 10_000, logger: captureLogs().logger });
    http.on('request', running.server.app);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
    await running.close();
  });

  it('sends every byte, whole or a range, and warns of no listener leak', async () => {
    const { server } = running;
    const token = await server.tokenFor(newUser());
    const auth = { Authorization: `Bearer ${token}` };
    const { data: task } = await server.client(token).POST('/api/v1/tasks', { body: buildTask() });
    const upload = await fetch(`${url}/api/v1/tasks/${task!.id}/attachments`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'image/png' },
      body: bytes,
    });
    expect(upload.status).toBe(201);
    const { id } = (await upload.json()) as { id: string };

    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    realProcess.on('warning', onWarning);
    try {
      const whole = await fetch(`${url}/api/v1/attachments/${id}/content`, { headers: auth });
      expect(whole.status).toBe(200);
      const received = Buffer.from(await whole.arrayBuffer());
      expect([received.length, sha256(received)]).toEqual([bytes.length, sha256(bytes)]);

      const [start, end] = [CHUNK_BYTES - 10, 4 * CHUNK_BYTES + 10];
      const part = await fetch(`${url}/api/v1/attachments/${id}/content`, {
        headers: { ...auth, Range: `bytes=${start}-${end}` },
      });
      expect(part.status).toBe(206);
      expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(start, end + 1))).toBe(true);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      realProcess.off('warning', onWarning);
    }
    expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map(String)).toEqual([]);
  });
});
