import { spawnSync } from 'node:child_process';
import { describe, expect, it } from '@jest/globals';
import { decodeJwt } from 'jose';

const secret = 'x'.repeat(40);
/** `npm run token` as a shell runs it: its exit code, standard output and error. */
function token(args: string[], env: Record<string, string>) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], {
    env: { ...process.env, NODE_OPTIONS: '', JWT_SECRET: secret, ...env },
    encoding: 'utf8',
  });
  return { status: run.status, stdout: run.stdout.trim(), stderr: run.stderr };
}

describe('npm run token', () => {
  it('mints a token with iat and the asked lifetime outside production', () => {
    const { status, stdout } = token(['--sub', 'alice', '--ttl', '15m'], { NODE_ENV: 'development' });
    expect(status).toBe(0);
    const claims = decodeJwt(stdout);
    expect(claims.sub).toBe('alice');
    expect(claims.exp! - claims.iat!).toBe(900);
  });

  it('refuses in production unless forced, and refuses a lifetime the server would refuse', () => {
    const refused = token(['--sub', 'alice'], { NODE_ENV: 'production' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('NODE_ENV is production');
    expect(refused.stdout).toBe('');
    expect(token(['--sub', 'alice', '--force'], { NODE_ENV: 'production' }).status).toBe(0);
    const tooLong = token(['--sub', 'alice', '--ttl', '2d'], { NODE_ENV: 'development' });
    expect(tooLong.status).toBe(1);
    expect(tooLong.stderr).toContain('JWT_MAX_TOKEN_AGE_SECONDS=86400');
  });

  it('--help prints the usage, with the default lifetime, and exits 0 without minting', () => {
    for (const flag of ['--help', '-h']) {
      const { status, stdout, stderr } = token([flag], { NODE_ENV: 'development' });
      expect(status).toBe(0);
      expect(stderr).toBe('');
      expect(stdout).toMatch(/^Usage: npm run --silent token -- --sub <user> \[options\]/);
      expect(stdout).toContain('--ttl <lifetime>');
      expect(stdout).toContain('default: 1h');
    }
  });

  it('an unknown option is one line naming it, then the usage, exit 1: no stack', () => {
    const { status, stdout, stderr } = token(['--sub', 'alice', '--bogus'], { NODE_ENV: 'development' });
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.split('\n')[0]).toBe("token: Unknown option '--bogus'");
    expect(stderr).toContain('Usage:');
    expect(stderr).not.toMatch(/^\s+at /m);
  });

  it('a token lives 1 hour by default', () => {
    const { status, stdout } = token(['--sub', 'alice'], { NODE_ENV: 'development' });
    expect(status).toBe(0);
    const claims = decodeJwt(stdout);
    expect(claims.exp! - claims.iat!).toBe(3600);
  });
});
