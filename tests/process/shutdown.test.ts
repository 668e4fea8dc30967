import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { SignJWT } from 'jose';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/database.js';

const dataDir = mkdtempSync(join(tmpdir(), 'tasks-shutdown-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });

/** The real entry point (src/main.ts) as its own process, as a process manager would run it. */
async function startMain(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null>; output: () => string }> {
  const port = await freePort();
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, NODE_OPTIONS: '', NODE_ENV: 'production', LOG_FORMAT: 'json', PORT: String(port), HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    if (await fetch(`${url}/health/ready`).then((r) => r.ok, () => false)) break;
    if (i > 150 || child.exitCode !== null) throw new Error(`the server did not start:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, url, exited, output: () => output };
}

describe('graceful shutdown under load', () => {
  it('SIGTERM lets every request in flight finish, keeps every acknowledged write, exits 0', async () => {
    const secret = randomBytes(32).toString('base64url');
    const { child, url, exited, output } = await startMain({ JWT_SECRET: secret, PGLITE_DIR: dataDir, SHUTDOWN_TIMEOUT_MS: '20000' });
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('shutdown-user').setExpirationTime('5m').sign(new TextEncoder().encode(secret));

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
