import { createHash, randomInt, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidCredentials, LoginThrottled } from '../../src/auth/builtin/errors.js';
import { builtinAuth, type BuiltinIssuer } from '../../src/auth/builtin/issuer.js';
import { ConfigError, DEFAULT_LOGIN_THROTTLE, loadConfig } from '../../src/config.js';
import type { Database } from '../../src/db/database.js';
import { captureLogs } from '../helpers/logs.js';
import { testDatabase } from '../helpers/server.js';

/*
 * The built-in issuer's login budgets are configuration (LOGIN_*), read by config.ts and handed to
 * the issuer as main.ts hands them: `builtinAuth(db, config.auth, logger)`.
 */

const PASSWORD = 'correct horse battery staple';
const newEmail = () => `user-${randomUUID()}@example.com`;
const newIp = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    return (error as ConfigError).problems;
  }
};

describe('LOGIN_* configuration', () => {
  it('defaults to 5 failures per (email, IP), 100 per email and 50 per IP in 15 minutes', () => {
    expect(loadConfig({}).auth.loginThrottle).toEqual({
      windowSeconds: 900,
      maxPerEmailAndIp: 5,
      maxPerEmail: 100,
      maxPerIp: 50,
    });
    expect(DEFAULT_LOGIN_THROTTLE).toEqual(loadConfig({}).auth.loginThrottle);
  });

  it('reads every limit from the environment', () => {
    const config = loadConfig({
      LOGIN_FAILURE_WINDOW_SECONDS: '120',
      LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP: '3',
      LOGIN_MAX_FAILURES_PER_EMAIL: '30',
      LOGIN_MAX_FAILURES_PER_IP: '10',
    });
    expect(config.auth.loginThrottle).toEqual({
      windowSeconds: 120,
      maxPerEmailAndIp: 3,
      maxPerEmail: 30,
      maxPerIp: 10,
    });
  });

  it('refuses values out of range, and a per-email budget not above the per (email, IP) one', () => {
    expect(
      problemsOf({
        LOGIN_FAILURE_WINDOW_SECONDS: '10',
        LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP: '0',
        LOGIN_MAX_FAILURES_PER_EMAIL: 'many',
        LOGIN_MAX_FAILURES_PER_IP: '-1',
      }),
    ).toEqual([
      'LOGIN_FAILURE_WINDOW_SECONDS must be an integer from 60 to 86400 (got "10")',
      'LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP must be an integer from 1 to 1000 (got "0")',
      'LOGIN_MAX_FAILURES_PER_EMAIL must be an integer from 1 to 1000000 (got "many")',
      'LOGIN_MAX_FAILURES_PER_IP must be an integer from 1 to 1000000 (got "-1")',
    ]);
    expect(problemsOf({ LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP: '10', LOGIN_MAX_FAILURES_PER_EMAIL: '10' })).toEqual([
      "LOGIN_MAX_FAILURES_PER_EMAIL (10) must be above LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP (10): else failing from one address would lock the account's owner out everywhere",
    ]);
  });
});

describe('the issuer built from that configuration', () => {
  let database: Database;
  beforeAll(async () => {
    database = await testDatabase();
  });
  afterAll(() => database.close());

  /** The issuer as main.ts builds it, from this environment. */
  const issuerFrom = (env: Record<string, string>): BuiltinIssuer =>
    builtinAuth(database.db, loadConfig({ AUTH_BUILTIN: 'true', ...env }).auth, captureLogs().logger).issuer;

  /** How a login ends: 200, 401, or 429 with the problem's type and its Retry-After. */
  interface Outcome {
    status: number;
    type?: string;
    retryAfter?: number;
  }
  const attempt = (issuer: BuiltinIssuer, email: string, password: string, ip: string): Promise<Outcome> =>
    issuer.login(email, password, ip).then(
      (): Outcome => ({ status: 200 }),
      (error: unknown): Outcome => {
        if (error instanceof LoginThrottled)
          return {
            status: error.status,
            type: error.toProblem('/api/v1/auth/login', 'r').type,
            retryAfter: Number(error.headers['Retry-After']),
          };
        if (error instanceof InvalidCredentials) return { status: error.status };
        throw error;
      },
    );

  it('LOGIN_MAX_FAILURES_PER_IP=2: the third login from that address is refused 429, even with the right password; other addresses are not', async () => {
    const issuer = issuerFrom({ LOGIN_MAX_FAILURES_PER_IP: '2' });
    const email = newEmail();
    await issuer.register(email, PASSWORD);
    const ip = newIp();
    expect(await attempt(issuer, newEmail(), 'guess', ip)).toEqual({ status: 401 });
    expect(await attempt(issuer, newEmail(), 'guess', ip)).toEqual({ status: 401 });
    const third = await attempt(issuer, email, PASSWORD, ip);
    expect(third).toMatchObject({ status: 429, type: 'urn:tasks-api:problem:login-throttled' });
    expect(third.retryAfter).toBeGreaterThan(800);
    expect(third.retryAfter).toBeLessThanOrEqual(900);
    expect(await attempt(issuer, email, PASSWORD, newIp())).toEqual({ status: 200 });
  });

  it('LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP=1 and a 60 s window: the second try is refused until that window has passed', async () => {
    const issuer = issuerFrom({ LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP: '1', LOGIN_FAILURE_WINDOW_SECONDS: '60' });
    const email = newEmail();
    await issuer.register(email, PASSWORD);
    const ip = newIp();
    expect(await attempt(issuer, email, 'wrong', ip)).toEqual({ status: 401 });
    const second = await attempt(issuer, email, PASSWORD, ip);
    expect(second).toMatchObject({ status: 429 });
    expect(second.retryAfter).toBeGreaterThan(50);
    expect(second.retryAfter).toBeLessThanOrEqual(60);
    // 61 s later (its window moved back), a window of 60 s has passed; the default 900 s would not have.
    const key = `email-ip:${createHash('sha256').update(`${email}\n${ip}`).digest('base64url')}`;
    const moved = await database.db
      .updateTable('login_failures')
      .set({ window_started_at: new Date(Date.now() - 61_000) })
      .where('key', '=', key)
      .executeTakeFirst();
    expect(moved.numUpdatedRows).toBe(1n);
    expect(await attempt(issuer, email, PASSWORD, ip)).toEqual({ status: 200 });
  });
});
