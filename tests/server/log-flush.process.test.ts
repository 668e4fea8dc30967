import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { afterAll, describe, expect, it } from '@jest/globals';
import { migratedPgliteDir, runToEnd, startMain } from '../helpers/process.js';

const dataDir = migratedPgliteDir('tasks-log-flush-');
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

interface Line {
  message: string;
  request_id?: string;
  [field: string]: unknown;
}

/** stdout as log lines; it must be JSON lines and nothing else, the last one ended by its newline. */
function jsonLines(stdout: string): Line[] {
  const lines = stdout.split('\n');
  expect(lines.pop()).toBe('');
  const notJson = lines.filter((line) => {
    try {
      JSON.parse(line);
      return false;
    } catch {
      return true;
    }
  });
  expect(notJson).toEqual([]);
  return lines.map((line) => JSON.parse(line) as Line);
}

/** tests/server/fixtures/log-then-crash.ts run to its crash: exit code, stdout, stderr. */
function crash(
  format: 'json' | 'pretty',
  count: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runToEnd(['tests/server/fixtures/log-then-crash.ts', format, String(count)]);
}

describe('log lines buffered for stdout', () => {
  it('SIGTERM right after a burst of requests: every access line, in order, then "stopped", all on stdout', async () => {
    const requests = 2000;
    const clients = 4;
    const { child, url, stdout } = await startMain({
      JWT_SECRET: randomBytes(32).toString('base64url'),
      PGLITE_DIR: dataDir,
      SHUTDOWN_DRAIN_MS: '0',
    });
    // 'close' (not 'exit'): every byte the process wrote to the pipe has been read.
    const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const agent = new Agent({ keepAlive: true, maxSockets: clients });
    const get = () =>
      new Promise<string>((resolve, reject) => {
        request(`${url}/health/live`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(String(res.headers['x-request-id'])));
        })
          .on('error', reject)
          .end();
      });
    // Each client sends its requests one after another over keep-alive, so its lines have an order.
    const sent = await Promise.all(
      Array.from({ length: clients }, async () => {
        const ids: string[] = [];
        for (let i = 0; i < requests / clients; i += 1) ids.push(await get());
        return ids;
      }),
    );
    child.kill('SIGTERM'); // the last lines are still in the buffer
    expect(await closed).toBe(0);
    agent.destroy();

    const all = new Set(sent.flat());
    expect(all.size).toBe(requests);
    const lines = jsonLines(stdout());
    const accessLines = lines.filter((line) => line.message === 'request');
    // Besides the burst, only startMain's readiness polls.
    expect(new Set(accessLines.filter((line) => !all.has(line.request_id!)).map((line) => line.route))).toEqual(
      new Set(['/health/ready']),
    );
    const logged = accessLines.map((line) => line.request_id!).filter((id) => all.has(id));
    expect(logged).toHaveLength(requests);
    for (const ids of sent) {
      const mine = new Set(ids);
      expect(logged.filter((id) => mine.has(id))).toEqual(ids);
    }
    const messages = lines.map((line) => line.message);
    expect(messages.indexOf('shutting down')).toBeGreaterThan(messages.lastIndexOf('request'));
    expect(messages.at(-1)).toBe('stopped');
  }, 60_000);

  it('an uncaught exception: every line logged before it, then the error, credentials redacted; Node still prints it and exits 1', async () => {
    const count = 1000;
    const { code, stdout, stderr } = await crash('json', count);
    expect(code).toBe(1);
    expect(stderr).toContain('Error: boom');

    const lines = jsonLines(stdout);
    expect(lines[0]).toMatchObject({
      message: 'credentials',
      headers: { authorization: '[REDACTED]' },
      password: '[REDACTED]',
    });
    expect(stdout).not.toMatch(/abc\.def\.ghi|hunter22/);
    expect(lines.filter((line) => line.message === 'line').map((line) => line.i)).toEqual(
      Array.from({ length: count }, (_, i) => i),
    );
    expect(lines.at(-1)).toMatchObject({
      level: 'error',
      message: 'uncaught exception',
      origin: 'uncaughtException',
      error: 'Error: boom',
    });
    expect(lines.at(-1)!.stack).toContain('log-then-crash.ts');
  });

  it('pretty lines carry no colour codes when stdout is not a terminal', async () => {
    const { stdout } = await crash('pretty', 3);
    expect(stdout).toContain(' info credentials ');
    expect(stdout).toContain(' error uncaught exception ');
    expect(stdout).not.toContain('\u001b[');
  });
});
