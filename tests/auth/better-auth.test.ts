import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PGlite } from '@electric-sql/pglite';
import { betterAuth } from 'better-auth';
import { getMigrations } from 'better-auth/db/migration';
import { toNodeHandler } from 'better-auth/node';
import { jwt } from 'better-auth/plugins/jwt';
import { decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { PGliteDialect } from 'kysely';
import { startServer, type TestServer } from '../helpers/server.js';

/**
 * The API behind a real Better Auth instance (its JWT plugin, defaults untouched except a short
 * key rotation interval), on embedded PGlite on a loopback port: the set-up the README describes.
 */
const ROTATION_SECONDS = 2;
const COOLDOWN_MS = 1000;

let authServer: Server;
let authBase: string;
let pglite: PGlite;
let jwksFetches = 0;
let api: TestServer;

beforeAll(async () => {
  authServer = createServer();
  await new Promise<void>((resolve) => authServer.listen(0, '127.0.0.1', resolve));
  authBase = `http://127.0.0.1:${(authServer.address() as AddressInfo).port}`;
  pglite = new PGlite('memory://');
  const auth = betterAuth({
    baseURL: authBase,
    secret: 'a-test-only-better-auth-secret-of-enough-length',
    database: { dialect: new PGliteDialect({ pglite }), type: 'postgres' },
    emailAndPassword: { enabled: true },
    plugins: [jwt({ jwks: { rotationInterval: ROTATION_SECONDS, gracePeriod: 600 } })],
    telemetry: { enabled: false },
    logger: { disabled: true },
  });
  await (await getMigrations(auth.options)).runMigrations();
  const handler = toNodeHandler(auth);
  authServer.on('request', (req, res) => {
    if (req.url === '/api/auth/jwks') jwksFetches += 1;
    void handler(req, res);
  });

  api = await startServer({
    jwt: {
      secret: undefined,
      jwksUrl: new URL(`${authBase}/api/auth/jwks`),
      issuer: authBase,
      audience: authBase,
      jwksCooldownMs: COOLDOWN_MS,
    },
  });
});

afterAll(async () => {
  await api.close();
  authServer.closeAllConnections();
  await new Promise((resolve) => authServer.close(resolve));
  await pglite.close();
});

/** Signs a user up with Better Auth and returns its user object and session cookie. */
async function signUp(email: string, name: string) {
  const res = await fetch(`${authBase}/api/auth/sign-up/email`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Origin: authBase },
    body: JSON.stringify({ email, name, password: 'correct horse battery staple' }),
  });
  expect(res.status).toBe(200);
  const { user } = (await res.json()) as { user: { id: string; email: string; name: string } };
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .join('; ');
  return { user, cookie };
}

/** A JWT for the session, from the JWT plugin's /token endpoint. */
async function jwtFor(cookie: string): Promise<string> {
  const res = await fetch(`${authBase}/api/auth/token`, { headers: { Cookie: cookie } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { token: string }).token;
}

describe('a Better Auth frontend', () => {
  it("creates the task for the Better Auth user's id and shows their email and name on /me", async () => {
    const { user, cookie } = await signUp(`ada-${Date.now()}@example.com`, 'Ada Lovelace');
    const token = await jwtFor(cookie);
    expect(decodeProtectedHeader(token).alg).toBe('EdDSA');

    const client = api.client(token);
    const created = await client.POST('/api/v1/tasks', { body: { title: 'Write the first program' } });
    expect(created.response.status).toBe(201);
    const row = await api.database.db
      .selectFrom('tasks')
      .select('owner_id')
      .where('id', '=', created.data!.id)
      .executeTakeFirstOrThrow();
    expect(row.owner_id).toBe(user.id);

    const me = await client.GET('/api/v1/me');
    expect(me.data).toMatchObject({
      sub: user.id,
      email: user.email,
      name: 'Ada Lovelace',
      scopes: ['tasks:read', 'tasks:write'],
      tasks: { total: 1 },
    });

    const other = await signUp(`grace-${Date.now()}@example.com`, 'Grace Hopper');
    const theirs = await api.client(await jwtFor(other.cookie)).GET('/api/v1/tasks');
    expect(theirs.data!.items).toEqual([]);
  });

  it('picks up a rotated key with one JWKS refetch, and an unknown kid cannot force refetch storms', async () => {
    const { cookie } = await signUp(`rotate-${Date.now()}@example.com`, 'Rotating User');
    const before = await jwtFor(cookie);
    expect((await api.client(before).GET('/api/v1/me')).response.status).toBe(200);

    // Better Auth makes a new signing key once the current one is older than its rotation interval.
    await new Promise((resolve) => setTimeout(resolve, ROTATION_SECONDS * 1000 + 200));
    const after = await jwtFor(cookie);
    expect(decodeProtectedHeader(after).kid).not.toBe(decodeProtectedHeader(before).kid);
    const fetchesBefore = jwksFetches;
    expect((await api.client(after).GET('/api/v1/me')).response.status).toBe(200);
    expect(jwksFetches).toBe(fetchesBefore + 1);
    // The old key is still published (grace period), so a token signed before rotation still works.
    expect((await api.client(before).GET('/api/v1/me')).response.status).toBe(200);

    // 30 tokens with kids nobody published, one after another (concurrent ones would share a
    // fetch anyway): every one is 401, and the JWKS is fetched at most once per cool-down, however
    // long the 30 take on a busy machine (over a second, at times, with the suite beside it).
    await new Promise((resolve) => setTimeout(resolve, COOLDOWN_MS + 100));
    const rogue = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const stormStart = jwksFetches;
    const stormStarted = performance.now();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i += 1) {
      const forged = await new SignJWT({ sub: `attacker-${i}` })
        .setProtectedHeader({ alg: 'EdDSA', kid: `unknown-${i}` })
        .setIssuer(authBase)
        .setAudience(authBase)
        .setExpirationTime('5m')
        .sign(rogue.privateKey);
      statuses.push((await api.client(forged).GET('/api/v1/me')).response.status);
    }
    expect(new Set(statuses)).toEqual(new Set([401]));
    const cooldowns = Math.floor((performance.now() - stormStarted) / COOLDOWN_MS);
    expect(jwksFetches - stormStart).toBeLessThanOrEqual(1 + cooldowns);
    expect(cooldowns).toBeLessThan(10); // else the bound above says little
  });
});
