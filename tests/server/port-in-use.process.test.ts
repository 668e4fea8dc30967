import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { listen, ListenFailed } from '../../src/http/http-server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'tasks-port-'));
let holder: Server;
let port: number;

beforeAll(async () => {
  // Something else holds the port: a plain listener on loopback.
  holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  port = (holder.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((resolve) => holder.close(resolve));
  rmSync(dataDir, { recursive: true, force: true });
});

/** src/main.ts with `env`: its exit code, stdout and stderr. */
function run(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      NODE_ENV: 'development',
      LOG_FORMAT: 'json',
      JWT_SECRET: randomBytes(32).toString('base64url'),
      AUTH_BUILTIN: 'false',
      WEBHOOK_WORKER: 'off',
      PGLITE_DIR: dataDir,
      HOST: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('a port that cannot be taken', () => {
  it('EADDRINUSE: one line naming the port and what to do, exit 1, no stack', async () => {
    const { code, stdout, stderr } = await run({ PORT: String(port) });
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(
      `Cannot listen on 127.0.0.1:${port}: it is already in use (another tasks-api, or an earlier run still going?). Stop that process, or set PORT to a free port (PORT=0 picks one).`,
    );
    expect(`${stdout}${stderr}`).not.toMatch(/^\s+at /m);
    expect(stderr).not.toContain('fatal');
  }, 30_000);

  it('EACCES on a privileged port: one line with a hint (as a user who may not bind it)', async () => {
    if (process.getuid?.() !== 0) {
      const { code, stderr } = await run({ PORT: '80' });
      expect(code).toBe(1);
      expect(stderr.trim()).toBe(
        'Cannot listen on 127.0.0.1:80: permission denied (ports below 1024 need privileges). Set PORT to a port above 1023.',
      );
      return;
    }
    // root may bind port 80: the refusal the kernel would give anyone else, handed to listen().
    const server = createHttpServer();
    server.listen = function fakeListen(this: HttpServer) {
      process.nextTick(() =>
        this.emit(
          'error',
          Object.assign(new Error('listen EACCES: permission denied 127.0.0.1:80'), { code: 'EACCES' }),
        ),
      );
      return this;
    } as never;
    const error = await listen(server, 80, '127.0.0.1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ListenFailed);
    expect((error as Error).message).toBe(
      'Cannot listen on 127.0.0.1:80: permission denied (ports below 1024 need privileges). Set PORT to a port above 1023.',
    );
  }, 30_000);
});
