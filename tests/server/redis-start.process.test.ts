import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { migratedPgliteDir, startMain } from '../helpers/process.js';

/**
 * With REDIS_URL the limits hold from the first request: the server connects to Redis before it
 * listens (the rate limiter loads its scripts as it starts). An outside review saw 2 of 4
 * production starts log "rate limit store failed; letting requests through … The client is
 * offline" while Redis was up: the first requests were served before the connection was ready.
 */
describe('REDIS_URL at start', () => {
  it('enforces the rate limit from the very first requests, and logs no store failure, start after start', async () => {
    for (let start = 0; start < 2; start += 1) {
      const dataDir = migratedPgliteDir('tasks-redis-start-');
      const secret = randomBytes(32).toString('base64url');
      const server = await startMain({
        JWT_SECRET: secret,
        PGLITE_DIR: dataDir,
        REDIS_URL: 'redis://127.0.0.1:6379',
        RATE_LIMIT_PER_MINUTE: '2',
        WEBHOOK_WORKER: 'off',
      });
      try {
        const token = await hs256Token(secret, `redis-start-${randomUUID()}`, '5m');
        const statuses = [];
        for (let i = 0; i < 3; i += 1)
          statuses.push(
            (await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } })).status,
          );
        expect(statuses).toEqual([200, 200, 429]);
        expect(server.stdout()).not.toContain('store failed');
        expect(server.stdout()).not.toContain('redis did not answer');
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  }, 60_000); // two server processes started one after the other
});
