import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { startMain } from '../helpers/process.js';
import { scratchDatabase } from '../helpers/server.js';

// Workers share a PostgreSQL server; with PGlite the configuration is refused (tested in config.test.ts).
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

onPostgres('WEB_CONCURRENCY', () => {
  it('runs that many workers on one port, and SIGTERM stops them all with exit code 0', async () => {
    const secret = randomBytes(32).toString('base64url');
    // A database of its own: each worker also runs webhook deliveries (in production mode, which
    // refuses loopback), and must not take up another test file's.
    const scratch = await scratchDatabase();
    const { child, url, exited, output } = await startMain({
      JWT_SECRET: secret,
      DATABASE_URL: scratch.url!,
      DATABASE_PREPARED_STATEMENTS: process.env.TEST_DATABASE_PREPARED_STATEMENTS ?? 'on',
      WEB_CONCURRENCY: '2',
      CONCURRENCY_PER_USER: '32', // one user's 20 requests at once, below
    });
    // Both workers listen (the primary only supervises).
    for (let i = 0; i < 100 && output().split('"message":"listening"').length - 1 < 2; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Both processes' webhook workers start, though they race to create the job queue's schema.
    for (
      let i = 0;
      i < 100 && output().split('"message":"webhook worker running in this process"').length - 1 < 2;
      i += 1
    ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(output()).not.toContain('"message":"webhook worker did not start"');
    const pids = [...output().matchAll(/"message":"listening"[^\n]*"pid":(\d+)/g)].map((m) => Number(m[1]));
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(child.pid);

    const token = await hs256Token(secret, `cluster-${randomBytes(4).toString('hex')}`, '5m');
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(`${url}/api/v1/tasks`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ title: `t${i}` }),
        }).then((r) => r.status),
      ),
    );
    expect(statuses.every((status) => status === 201)).toBe(true);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output().split('"message":"stopped"').length - 1).toBe(2);
    expect(output()).toContain('"message":"all workers stopped"');
    await scratch.drop();
  }, 60_000);
});
