import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { jwtVerify } from 'jose';

/**
 * `npm run token` reads .env itself (scripts/token.ts), as `node --env-file-if-exists=.env` would:
 * a variable already in the environment wins, and without a .env nothing is printed (the flag on
 * tsx printed ".env not found. Continuing without it." twice on Node 20, once per process).
 */

const root = process.cwd();
const tsx = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tasks-token-env-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** scripts/token.ts run in `dir` (where it looks for .env), with `env` and no JWT settings of jest's. */
function token(env: Record<string, string> = {}) {
  const { JWT_SECRET: _secret, JWT_JWKS_URL: _jwks, ...inherited } = process.env;
  const run = spawnSync(process.execPath, ['--import', tsx, join(root, 'scripts/token.ts'), '--sub', 'alice'], {
    cwd: dir,
    env: { ...inherited, NODE_OPTIONS: '', NODE_ENV: 'development', ...env },
    encoding: 'utf8',
  });
  return { status: run.status, stdout: run.stdout.trim(), stderr: run.stderr };
}

const verifiesWith = async (jwt: string, secret: string) =>
  jwtVerify(jwt, new TextEncoder().encode(secret)).then(
    () => true,
    () => false,
  );

describe('npm run token and .env', () => {
  it('without a .env: a token, and nothing on stderr', () => {
    const { status, stdout, stderr } = token({ JWT_SECRET: 'e'.repeat(40) });
    expect(status).toBe(0);
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(stderr).toBe('');
  });

  it("signs with .env's JWT_SECRET; one set in the environment wins over it", async () => {
    const fromFile = 'f'.repeat(40);
    const fromEnv = 'g'.repeat(40);
    writeFileSync(join(dir, '.env'), `# the server's settings\nJWT_SECRET=${fromFile}\n`);
    const fileOnly = token();
    expect(fileOnly.status).toBe(0);
    expect(fileOnly.stderr).toBe('');
    expect(await verifiesWith(fileOnly.stdout, fromFile)).toBe(true);
    const both = token({ JWT_SECRET: fromEnv });
    expect(both.status).toBe(0);
    expect(await verifiesWith(both.stdout, fromEnv)).toBe(true);
  });
});
