import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/database.js';
import { startMain } from '../helpers/process.js';

const dataDir = mkdtempSync(join(tmpdir(), 'tasks-shutdown-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('graceful shutdown under load', () => {
  it('SIGTERM lets every request in flight finish, keeps every acknowledged write, exits 0', async () => {
    const secret = randomBytes(32).toString('base64url');
    const { child, url, exited, output } = await startMain({ JWT_SECRET: secret, PGLITE_DIR: dataDir, SHUTDOWN_TIMEOUT_MS: '20000' });
    const token = await hs256Token(secret, 'shutdown-user', '5m');

    let answered = 0;
    let signalledAt: number | undefined;
    // Each request on its own connection, opened at once (fetch would queue some in its pool,
    // and those would not be in flight when the signal arrives).
    const post = (i: number) =>
      new Promise<number | string>((resolve) => {
        const body = JSON.stringify({ title: `in flight ${i}` });
        const req = request(`${url}/api/v1/tasks`, {
          method: 'POST',
          agent: false,
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        }, (res) => {
          res.resume();
          res.on('end', () => {
            answered += 1;
            resolve(res.statusCode!);
          });
        });
        req.on('error', (error) => resolve(`request ${i}: ${error.message} ${Date.now() - (signalledAt ?? Date.now())} ms after SIGTERM`));
        req.end(body);
      });
    const requests = Array.from({ length: 150 }, (_, i) => post(i));
    // Signal once the server is busy: some answered, most still waiting.
    while (answered < 5) await new Promise((resolve) => setTimeout(resolve, 2));
    child.kill('SIGTERM');
    signalledAt = Date.now();

    const statuses = await Promise.all(requests);
    expect(statuses.filter((status) => status !== 201)).toEqual([]);
    expect(await exited).toBe(0);
    expect(output()).toContain('"message":"shutting down"');
    expect(output()).toContain('"message":"stopped"');
    // New connections are refused once it is gone.
    await expect(fetch(`${url}/health/live`)).rejects.toThrow();

    // Every 201 is in the database.
    const database = await openDatabase({ pgliteDir: dataDir });
    try {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from tasks where owner_id = 'shutdown-user'`.execute(database.db);
      expect(rows[0]!.n).toBe(150);
    } finally {
      await database.close();
    }
  }, 60_000);
});
