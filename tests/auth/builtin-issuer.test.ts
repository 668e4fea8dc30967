import { createHash, randomInt, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { hashPassword, SCRYPT } from '../../src/auth/builtin/passwords.js';
import { signingKeys } from '../../src/auth/builtin/signing-keys.js';
import { BUILTIN_ISSUER, startServer, TEST_SCRYPT, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  // Behind a trusted proxy, so each test can be its own client IP (the per-IP login budget).
  server = await startServer({ builtinAuth: true, trustProxy: 'loopback' });
});
afterAll(() => server.close());

const PASSWORD = 'correct horse battery staple';
const newEmail = () => `user-${randomUUID()}@example.com`;
const newIp = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;

interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  token_type: string;
  scope: string;
}

/** POST /api/v1/auth/<path> to `to` (the file's server unless given), as client `ip`. */
async function post(path: string, body: unknown, ip = newIp(), to: TestServer = server) {
  const res = await fetch(`${to.url}/api/v1/auth/${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': ip },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { res, status: res.status, body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
}

async function register(email = newEmail(), password = PASSWORD, to: TestServer = server) {
  const { status, body } = await post('register', { email, password }, newIp(), to);
  expect(status).toBe(201);
  return { email, tokens: body as unknown as Tokens };
}

const me = (token: string) => server.client(token).GET('/api/v1/me');
const userRow = (email: string, on: TestServer = server) =>
  on.database.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();

describe('register', () => {
  it('creates the account and logs it in with an EdDSA token whose key is published', async () => {
    const email = newEmail();
    const { res, status, body } = await post('register', { email: email.toUpperCase(), password: PASSWORD });
    expect(status).toBe(201);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(body).toMatchObject({
      token_type: 'Bearer',
      expires_in: 900,
      refresh_token_expires_in: 30 * 86_400,
      scope: 'tasks:read tasks:write',
    });
    const tokens = body as unknown as Tokens;

    const jwks = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
    expect(JSON.stringify(jwks)).not.toMatch(/"d"/);
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createLocalJWKSet(jwks), {
      issuer: BUILTIN_ISSUER,
      audience: BUILTIN_ISSUER,
    });
    expect(protectedHeader).toMatchObject({ alg: 'EdDSA', typ: 'JWT' });
    expect(jwks.keys.map((key) => key.kid)).toContain(protectedHeader.kid);
    expect(payload.exp! - payload.iat!).toBe(900);

    const user = await userRow(email); // stored normalised: lower-case
    expect(payload.sub).toBe(user.id);
    // PHC string at this server's cost (TEST_SCRYPT; production's is checked below): salt and hash.
    const { logN, r, p } = TEST_SCRYPT;
    expect(user.password_hash).toMatch(new RegExp(`^\\$scrypt\\$ln=${logN},r=${r},p=${p}\\$[\\w-]{22}\\$[\\w-]{43}$`));
    const { data } = await me(tokens.access_token);
    expect(data).toMatchObject({ sub: user.id, email, scopes: ['tasks:read', 'tasks:write'], tasks: { total: 0 } });
    expect(JSON.stringify(server.logs)).not.toContain(PASSWORD);
  });

  it('refuses an email that is taken, however it is spelled, with 409', async () => {
    const { email } = await register();
    const { status, body } = await post('register', { email: email.toUpperCase(), password: 'another password' });
    expect(status).toBe(409);
    expect(body).toMatchObject({ type: 'urn:tasks-api:problem:email-taken', status: 409 });
  });

  it.each([
    ['a 7-character password', { email: 'x@example.com', password: 'short12' }, '/password'],
    ['a 129-character password', { email: 'x@example.com', password: 'p'.repeat(129) }, '/password'],
    ['a password of spaces', { email: 'x@example.com', password: ' '.repeat(12) }, '/password'],
    ['an invalid email', { email: 'not-an-email', password: PASSWORD }, '/email'],
    ['an unknown field', { email: 'x@example.com', password: PASSWORD, admin: true }, '/admin'],
  ])('answers 422 for %s, naming the field', async (_label, body, pointer) => {
    const res = await post('register', body);
    expect(res.status).toBe(422);
    expect((res.body!.errors as { pointer: string }[]).map((e) => e.pointer)).toContain(pointer);
  });
});

describe('login', () => {
  it('returns fresh tokens for the right password', async () => {
    const { email } = await register();
    const { status, body, res } = await post('login', { email, password: PASSWORD });
    expect(status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect((await me((body as unknown as Tokens).access_token)).response.status).toBe(200);
  });

  it('refuses logins for an email from a client IP after 5 failures there in 15 minutes, even the right password, with 429; the owner elsewhere is not locked out', async () => {
    const { email } = await register();
    const attacker = newIp();
    for (let i = 0; i < 5; i += 1)
      expect((await post('login', { email, password: `wrong ${i}` }, attacker)).status).toBe(401);
    const blocked = await post('login', { email: email.toUpperCase(), password: PASSWORD }, attacker);
    expect(blocked.status).toBe(429);
    expect(blocked.body).toMatchObject({ type: 'urn:tasks-api:problem:login-throttled', status: 429 });
    const retryAfter = Number(blocked.res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(800);
    expect(retryAfter).toBeLessThanOrEqual(900);
    // The account's owner, from another address, still gets in: failing on purpose locks nobody out.
    expect((await post('login', { email, password: PASSWORD }, newIp())).status).toBe(200);
    // Someone else is not affected, and an unknown email is throttled the same way.
    const other = await register();
    expect((await post('login', { email: other.email, password: PASSWORD }, attacker)).status).toBe(200);
    const ghost = newEmail();
    for (let i = 0; i < 5; i += 1)
      expect((await post('login', { email: ghost, password: 'guess' }, attacker)).status).toBe(401);
    expect((await post('login', { email: ghost, password: 'guess' }, attacker)).status).toBe(429);
  });

  it('refuses every login for an email after 100 failures from anywhere in the window (guessing spread over many addresses)', async () => {
    const { email } = await register();
    const key = `email:${createHash('sha256').update(email.toLowerCase()).digest('base64url')}`;
    await server.database.db
      .insertInto('login_failures')
      .values({ key, failures: 100, window_started_at: new Date() })
      .execute();
    expect((await post('login', { email, password: PASSWORD }, newIp())).status).toBe(429);
  });

  it('refuses logins from a client IP with 50 failures in the window, whatever the email', async () => {
    const ip = newIp();
    const { email } = await register();
    await server.database.db
      .insertInto('login_failures')
      .values({ key: `ip:${ip}`, failures: 50, window_started_at: new Date() })
      .execute();
    expect((await post('login', { email, password: PASSWORD }, ip)).status).toBe(429);
    expect((await post('login', { email, password: PASSWORD }, newIp())).status).toBe(200);
  });

  it('forgets failure counters whose window has passed and expired refresh tokens (in the background, on a login)', async () => {
    const api = await startServer({ builtinAuth: true }); // a new process's first login purges
    try {
      const db = api.database.db;
      const [stale, live] = [`email:stale-${randomUUID()}`, `email:live-${randomUUID()}`];
      await db
        .insertInto('login_failures')
        .values([
          { key: stale, failures: 5, window_started_at: new Date(Date.now() - 16 * 60_000) },
          { key: live, failures: 5, window_started_at: new Date() },
        ])
        .execute();
      const user = { id: randomUUID(), email: newEmail(), password_hash: 'x' };
      await db.insertInto('users').values(user).execute();
      const token = (hash: string, expires: number) => ({
        token_hash: hash,
        family_id: randomUUID(),
        user_id: user.id,
        expires_at: new Date(Date.now() + expires),
      });
      const [expired, current] = [`expired-${randomUUID()}`, `current-${randomUUID()}`];
      await db
        .insertInto('refresh_tokens')
        .values([token(expired, -1000), token(current, 60_000)])
        .execute();
      expect((await post('login', { email: newEmail(), password: PASSWORD }, newIp(), api)).status).toBe(401);
      const keys = () => db.selectFrom('login_failures').select('key').where('key', 'in', [stale, live]).execute();
      for (let i = 0; i < 50 && (await keys()).length > 1; i += 1)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await keys()).map((row) => row.key)).toEqual([live]);
      const tokens = await db
        .selectFrom('refresh_tokens')
        .select('token_hash')
        .where('user_id', '=', user.id)
        .execute();
      expect(tokens.map((row) => row.token_hash)).toEqual([current]);
    } finally {
      await api.close();
    }
  });

  it('a success clears the email’s failures', async () => {
    const { email } = await register();
    for (let i = 0; i < 4; i += 1) await post('login', { email, password: 'wrong' });
    expect((await post('login', { email, password: PASSWORD })).status).toBe(200);
    for (let i = 0; i < 4; i += 1) await post('login', { email, password: 'wrong' });
    expect((await post('login', { email, password: PASSWORD })).status).toBe(200);
  });
});

describe('password hashing at the production cost', () => {
  // The file's server hashes cheaply (startServer's default); these two are about the work itself.
  let production: TestServer;
  beforeAll(async () => {
    production = await startServer({ builtinAuth: { passwordHashing: SCRYPT }, trustProxy: 'loopback' });
  });
  afterAll(() => production.close());

  it('answers an unknown email exactly as a wrong password, in comparable time', async () => {
    const { email } = await register(newEmail(), PASSWORD, production);
    const strip = (body: Record<string, unknown> | undefined) => ({ ...body, request_id: undefined });
    const attempt = async (who: string) => {
      const started = performance.now();
      const res = await post('login', { email: who, password: 'wrong password' }, newIp(), production);
      return { ...res, ms: performance.now() - started };
    };
    // Interleaved, so that load from other test files running meanwhile weighs on both alike
    // (4 wrong passwords stay under the email's budget of 5).
    const wrong: Awaited<ReturnType<typeof attempt>>[] = [];
    const unknown: Awaited<ReturnType<typeof attempt>>[] = [];
    for (let i = 0; i < 4; i += 1) {
      wrong.push(await attempt(email));
      unknown.push(await attempt(newEmail()));
    }
    for (const res of [...wrong, ...unknown]) {
      expect(res.status).toBe(401);
      expect(res.res.headers.get('www-authenticate')).toBe('Bearer');
      expect(strip(res.body)).toEqual(strip(wrong[0]!.body));
    }
    expect(wrong[0]!.body).toMatchObject({
      type: 'urn:tasks-api:problem:invalid-credentials',
      detail: 'The email or password is wrong.',
    });
    // Both run one scrypt (the unknown email against a decoy hash): without the decoy the unknown
    // email would answer in a few ms against ~300 ms, a ratio far outside this band.
    const median = (xs: { ms: number }[]) => {
      const sorted = xs.map((x) => x.ms).sort((a, b) => a - b);
      return (sorted[1]! + sorted[2]!) / 2;
    };
    expect(median(unknown) / median(wrong)).toBeGreaterThan(0.5);
    expect(median(unknown) / median(wrong)).toBeLessThan(2);
  });

  it('rehashes a password stored with weaker scrypt parameters', async () => {
    const email = newEmail();
    const weak = await hashPassword(PASSWORD, { logN: 10, r: 8, p: 1 });
    await production.database.db.insertInto('users').values({ id: randomUUID(), email, password_hash: weak }).execute();
    expect((await post('login', { email, password: PASSWORD }, newIp(), production)).status).toBe(200);
    expect((await userRow(email, production)).password_hash).toMatch(/^\$scrypt\$ln=15,r=8,p=3\$/);
  });
});

describe('refresh and logout', () => {
  it('rotates: each refresh token works once and the new access token works', async () => {
    const { tokens } = await register();
    const first = await post('refresh', { refresh_token: tokens.refresh_token });
    expect(first.status).toBe(200);
    const next = first.body as unknown as Tokens;
    expect(next.refresh_token).not.toBe(tokens.refresh_token);
    expect((await me(next.access_token)).response.status).toBe(200);
    expect((await post('refresh', { refresh_token: next.refresh_token })).status).toBe(200);
  });

  it('revokes the whole login when a used refresh token comes back', async () => {
    const { tokens } = await register();
    const stolen = tokens.refresh_token;
    const legit = (await post('refresh', { refresh_token: stolen })).body as unknown as Tokens;
    const replay = await post('refresh', { refresh_token: stolen });
    expect(replay.status).toBe(401);
    expect(replay.res.headers.get('www-authenticate')).toBe('Bearer');
    expect(replay.body).toMatchObject({ type: 'urn:tasks-api:problem:invalid-refresh-token' });
    // The refresh token the legitimate client got is dead too: its login was revoked.
    expect((await post('refresh', { refresh_token: legit.refresh_token })).status).toBe(401);
    const reuse = server.logs.find((line) => line.message === 'refresh token reused; its login is revoked');
    expect(reuse).toMatchObject({ level: 'warn', reason: 'reused' });
    expect(JSON.stringify(server.logs)).not.toContain(stolen);
  });

  it('lets exactly one of two simultaneous refreshes with the same token through, then revokes the login', async () => {
    const { tokens } = await register();
    const results = await Promise.all([
      post('refresh', { refresh_token: tokens.refresh_token }),
      post('refresh', { refresh_token: tokens.refresh_token }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 401]);
    const winner = results.find((r) => r.status === 200)!.body as unknown as Tokens;
    expect((await post('refresh', { refresh_token: winner.refresh_token })).status).toBe(401);
  });

  it('logout revokes the login; it answers 204 for any token, live or not', async () => {
    const { tokens } = await register();
    const second = (await post('refresh', { refresh_token: tokens.refresh_token })).body as unknown as Tokens;
    const out = await post('logout', { refresh_token: second.refresh_token });
    expect(out.status).toBe(204);
    expect((await post('refresh', { refresh_token: second.refresh_token })).status).toBe(401);
    expect((await post('logout', { refresh_token: `rt_${'x'.repeat(43)}` })).status).toBe(204);
    expect((await post('logout', { refresh_token: second.refresh_token })).status).toBe(204);
  });

  it('refuses an unknown, malformed or expired refresh token', async () => {
    expect((await post('refresh', { refresh_token: `rt_${'A'.repeat(43)}` })).status).toBe(401);
    expect((await post('refresh', { refresh_token: 'not a token' })).status).toBe(422);
    const { tokens } = await register();
    await server.database.db
      .updateTable('refresh_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('used_at', 'is', null)
      .where('revoked_at', 'is', null)
      .execute();
    expect((await post('refresh', { refresh_token: tokens.refresh_token })).status).toBe(401);
  });

  it('a disabled account can neither refresh nor log in; a deleted one cannot refresh', async () => {
    const disabled = await register();
    await server.database.db
      .updateTable('users')
      .set({ disabled_at: new Date() })
      .where('email', '=', disabled.email)
      .execute();
    expect((await post('refresh', { refresh_token: disabled.tokens.refresh_token })).status).toBe(401);
    const login = await post('login', { email: disabled.email, password: PASSWORD });
    expect(login.status).toBe(401);
    expect(login.body).toMatchObject({ type: 'urn:tasks-api:problem:invalid-credentials' });

    const deleted = await register();
    await server.database.db.deleteFrom('users').where('email', '=', deleted.email).execute();
    expect((await post('refresh', { refresh_token: deleted.tokens.refresh_token })).status).toBe(401);
  });
});

describe('signing keys', () => {
  it('rotates without logging anyone out: old tokens keep working, new ones use the new key', async () => {
    // A key set of its own, so the published list is exactly known.
    const api = await startServer({ ownDatabase: true, builtinAuth: true });
    try {
      const call = async (path: string, body: unknown) =>
        (await post(path, body, newIp(), api)).body as unknown as Tokens;
      const tokens = await call('register', { email: newEmail(), password: PASSWORD });
      const oldKid = decodeProtectedHeader(tokens.access_token).kid;
      await api.keys!.rotate();
      const fresh = await call('refresh', { refresh_token: tokens.refresh_token });
      const newKid = decodeProtectedHeader(fresh.access_token).kid;
      expect(newKid).not.toBe(oldKid);
      const { keys } = (await (await fetch(`${api.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
      expect(keys.map((key) => key.kid)).toEqual([newKid, oldKid]);
      expect((await api.client(tokens.access_token).GET('/api/v1/me')).response.status).toBe(200);
      expect((await api.client(fresh.access_token).GET('/api/v1/me')).response.status).toBe(200);
    } finally {
      await api.close();
    }
  });

  it('stores private keys encrypted when KEY_ENCRYPTION_SECRET is set, and encrypts older clear-text ones', async () => {
    const encrypted = await startServer({
      ownDatabase: true, // encrypted keys must not reach the other tests' database
      builtinAuth: { keyEncryptionSecret: 'a-key-encryption-secret-of-32-bytes-or-more' },
    });
    try {
      const keysTable = () => encrypted.database.db.selectFrom('signing_keys').select(['kid', 'private_jwk']).execute();
      await signingKeys(encrypted.database.db).rotate(); // a key made before the secret was set
      expect((await keysTable())[0]!.private_jwk).toContain('"d"');
      await encrypted.keys!.rotate();
      const rows = await keysTable();
      expect(rows.length).toBe(2);
      for (const row of rows) {
        expect(row.private_jwk).toMatch(/^enc:v1:[\w-]+\.[\w-]+\.[\w-]+$/);
        expect(row.private_jwk).not.toContain('"d"');
      }
      const registered = await post('register', { email: newEmail(), password: PASSWORD }, newIp(), encrypted);
      expect(registered.status).toBe(201);
      const { access_token } = registered.body as unknown as Tokens;
      expect((await encrypted.client(access_token).GET('/api/v1/me')).response.status).toBe(200);
      // Without the secret, or with another one, the keys cannot be used: signing fails loudly.
      await expect(signingKeys(encrypted.database.db).current()).rejects.toMatchObject({
        name: 'SigningKeyLocked',
        reason: 'no-secret',
        message: expect.stringContaining('set KEY_ENCRYPTION_SECRET to the secret they were written with'),
      });
      await expect(
        signingKeys(encrypted.database.db, { encryptionSecret: 'another-secret-of-at-least-32-bytes!!' }).current(),
      ).rejects.toMatchObject({
        name: 'SigningKeyLocked',
        reason: 'other-secret',
        message: expect.stringContaining('encrypted with another KEY_ENCRYPTION_SECRET'),
      });
    } finally {
      await encrypted.close();
    }
  });
});

describe('with the built-in issuer off', () => {
  it('answers 404 problem+json on its operations and refuses its tokens', async () => {
    const { tokens } = await register();
    const plain = await startServer();
    try {
      for (const [method, path] of [
        ['POST', '/api/v1/auth/login'],
        ['POST', '/api/v1/auth/register'],
        ['GET', '/.well-known/jwks.json'],
      ] as const) {
        const res = await fetch(`${plain.url}${path}`, {
          method,
          headers: { 'Content-Type': 'application/json' },
          body: method === 'POST' ? JSON.stringify({ email: newEmail(), password: PASSWORD }) : undefined,
        });
        expect(res.status).toBe(404);
        expect(await res.json()).toMatchObject({ type: 'urn:tasks-api:problem:builtin-auth-disabled' });
      }
      expect((await plain.client(tokens.access_token).GET('/api/v1/me')).response.status).toBe(401);
    } finally {
      await plain.close();
    }
  });
});
