import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { migratedPgliteDir, startMain } from '../helpers/process.js';
import { changeOf, openStream } from '../helpers/sse.js';

const dataDir = migratedPgliteDir('tasks-streams-');
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/**
 * The real entry point: SIGTERM ends open change streams cleanly (a clean end of the body, which
 * clients take as "reconnect"), the process still exits 0, and a stream resumed from its last
 * event id on the restarted server loses nothing and repeats nothing.
 */
describe('change streams and the process', () => {
  it('ends streams cleanly on SIGTERM, and a restarted server resumes them from Last-Event-ID', async () => {
    const secret = randomBytes(32).toString('base64url');
    const env = { JWT_SECRET: secret, PGLITE_DIR: dataDir, SHUTDOWN_DRAIN_MS: '0', WEBHOOK_WORKER: 'off' };
    const token = await hs256Token(secret, 'stream-user', '5m');
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
    const create = async (url: string, title: string) => {
      const response = await fetch(`${url}/api/v1/tasks`, { method: 'POST', headers, body: JSON.stringify({ title }) });
      expect(response.status).toBe(201);
      return ((await response.json()) as { id: string }).id;
    };

    const first = await startMain(env);
    const start = ((await (await fetch(`${first.url}/api/v1/changes`, { headers })).json()) as { next_token: string })
      .next_token;
    const stream = await openStream(`${first.url}/api/v1/changes/stream?since=${start}`, headers);
    const ids = [await create(first.url, 'one'), await create(first.url, 'two')];
    const got = [changeOf(await stream.next()).task.id, changeOf(await stream.next()).task.id];
    const lastId = stream.received.at(-1)!.id!;
    first.child.kill('SIGTERM');
    await expect(stream.ended).resolves.toBeUndefined(); // the body ended; the connection was not cut
    expect(await first.exited).toBe(0);
    expect(first.stdout()).toMatch(/"message":"stopped"/);

    const second = await startMain(env);
    try {
      ids.push(await create(second.url, 'three'));
      const resumed = await openStream(`${second.url}/api/v1/changes/stream?since=${start}`, {
        ...headers,
        'Last-Event-ID': lastId,
      });
      got.push(changeOf(await resumed.next()).task.id);
      ids.push(await create(second.url, 'four'));
      got.push(changeOf(await resumed.next()).task.id);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(resumed.received).toHaveLength(2);
      expect(got).toEqual(ids);
      resumed.close();
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  }, 120_000);
});
