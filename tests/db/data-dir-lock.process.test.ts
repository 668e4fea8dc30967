import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { entry, migratedPgliteDir, startMain } from '../helpers/process.js';

const dataDir = migratedPgliteDir('tasks-lock-');
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** src/main.ts on `dataDir` expected to refuse: its exit code, output and how long it took. */
function refusedStart(env: Record<string, string>): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, entry('src/main.ts'), {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      NODE_ENV: 'production',
      LOG_FORMAT: 'json',
      PORT: '0',
      HOST: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output, ms: Date.now() - started })));
}

describe('one server per embedded database directory', () => {
  it('a second server on the same PGLITE_DIR exits at once naming the directory; a lock left by a killed server is taken over', async () => {
    const secret = randomBytes(32).toString('base64url');
    const env = { JWT_SECRET: secret, PGLITE_DIR: dataDir };
    const first = await startMain(env);
    const token = await hs256Token(secret, 'lock-user', '5m');
    const created = await fetch(`${first.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'kept' }),
    });
    expect(created.status).toBe(201);

    const second = await refusedStart(env);
    expect(second.code).toBe(1);
    expect(second.output).toContain(`The embedded database in ${dataDir} is in use by process ${first.child.pid}`);
    expect(second.output).not.toMatch(/^\s+at /m); // one clear line, no stack
    expect(second.ms).toBeLessThan(10_000);
    // The first server was not disturbed.
    expect((await fetch(`${first.url}/health/ready`)).status).toBe(200);

    // Killed without a chance to clean up: its lock names a process that is gone.
    first.child.kill('SIGKILL');
    await first.exited;
    const third = await startMain(env);
    try {
      const list = await fetch(`${third.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } });
      expect(((await list.json()) as { items: { title: string }[] }).items.map((t) => t.title)).toEqual(['kept']);
    } finally {
      third.child.kill('SIGTERM');
      expect(await third.exited).toBe(0);
    }
    // A clean stop gives the directory back: the next server starts.
    const fourth = await startMain(env);
    fourth.child.kill('SIGTERM');
    expect(await fourth.exited).toBe(0);
  }, 60_000);
});
