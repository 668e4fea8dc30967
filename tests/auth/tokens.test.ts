import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload, type CryptoKey } from 'jose';
import { newUser, startServer, TEST_ISSUER, type TestServer } from '../helpers/server.js';

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

let jwks: Server;
let jwksUrl: URL;
let edPrivate: CryptoKey;
let esPrivate: CryptoKey;
let server: TestServer;

beforeAll(async () => {
  const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const es = await generateKeyPair('ES256');
  edPrivate = ed.privateKey;
  esPrivate = es.privateKey;
  const keys = [
    { ...(await exportJWK(ed.publicKey)), kid: 'ed-1', alg: 'EdDSA', use: 'sig' },
    { ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES256', use: 'sig' },
  ];
  jwks = createServer((_req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  jwksUrl = new URL(`http://127.0.0.1:${(jwks.address() as AddressInfo).port}/api/auth/jwks`);
  server = await startServer({ jwt: { jwksUrl, audience: TEST_ISSUER } });
});
afterAll(async () => {
  await server.close();
  jwks.close();
});

function asymmetric(key: CryptoKey, alg: 'EdDSA' | 'ES256', kid: string, payload: JWTPayload = {}) {
  return new SignJWT(payload)
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setSubject(newUser())
    .setIssuer(TEST_ISSUER)
    .setAudience(TEST_ISSUER)
    .setExpirationTime('5m')
    .sign(key);
}

function hs256(payload: JWTPayload, secret = server.secret) {
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
}

const valid = (): JWTPayload => ({ sub: newUser(), iss: TEST_ISSUER, aud: TEST_ISSUER, exp: now() + 300 });

function me(authorization?: string) {
  return fetch(`${server.url}/api/v1/me`, {
    headers: authorization === undefined ? {} : { Authorization: authorization },
  });
}

describe('accepted tokens', () => {
  it('accepts an HS256 token signed with the shared secret, whatever the case of "Bearer"', async () => {
    const token = await hs256(valid());
    expect((await me(`Bearer ${token}`)).status).toBe(200);
    expect((await me(`bearer ${token}`)).status).toBe(200);
  });

  it('accepts an EdDSA token whose key is published at the JWKS URL, with the subject as owner', async () => {
    const token = await asymmetric(edPrivate, 'EdDSA', 'ed-1', { email: 'eve@example.com', name: 'Eve' });
    const res = await me(`Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ email: 'eve@example.com', name: 'Eve', tasks: { total: 0 } });
  });

  it('accepts an ES256 token from the JWKS', async () => {
    expect((await me(`Bearer ${await asymmetric(esPrivate, 'ES256', 'es-1')}`)).status).toBe(200);
  });
});

describe('token age, as production checks it', () => {
  let strict: TestServer;
  beforeAll(async () => {
    strict = await startServer({ jwt: { requireIssuedAt: true, maxTokenAgeSeconds: 3600 } });
  });
  afterAll(() => strict.close());
  const sign = (payload: JWTPayload) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(strict.secret));
  const meOn = async (payload: JWTPayload) => {
    const res = await fetch(`${strict.url}/api/v1/me`, { headers: { Authorization: `Bearer ${await sign(payload)}` } });
    return { status: res.status, body: (await res.json()) as { detail?: string } };
  };

  it('accepts a token issued now for 15 minutes', async () => {
    expect((await meOn({ ...valid(), iat: now(), exp: now() + 900 })).status).toBe(200);
  });

  it.each([
    ['without iat', () => ({ ...valid(), exp: now() + 900 }), 'The token must say when it was issued ("iat").'],
    [
      'issued longer ago than the maximum age (1 h here)',
      () => ({ ...valid(), iat: now() - 3700, exp: now() + 60 }),
      'The token was issued too long ago.',
    ],
    [
      'valid for longer than the maximum age',
      () => ({ ...valid(), iat: now(), exp: now() + 7200 }),
      'The token is valid for longer than this server accepts (3600 s).',
    ],
  ])('refuses a token %s with 401', async (_label, payload, detail) => {
    const { status, body } = await meOn(payload());
    expect(status).toBe(401);
    expect(body.detail).toBe(detail);
  });
});

describe('401 with WWW-Authenticate for every bad token', () => {
  it('says only "Bearer" when no token was sent', async () => {
    const res = await me();
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await res.json()).toMatchObject({ type: 'urn:tasks-api:problem:missing-token', status: 401 });
  });

  const cases: [string, () => Promise<string>][] = [
    ['a malformed token', async () => 'Bearer not.a.jwt'],
    ['a token that is not a JWT at all', async () => 'Bearer abc'],
    [
      'an expired token (beyond the 5 s tolerance the test server allows)',
      async () => `Bearer ${await hs256({ ...valid(), exp: now() - 60 })}`,
    ],
    ['a token not valid before a future nbf', async () => `Bearer ${await hs256({ ...valid(), nbf: now() + 600 })}`],
    [
      'a token signed with another secret',
      async () => `Bearer ${await hs256(valid(), 'another-secret-that-is-long-enough-xxxx')}`,
    ],
    ['an unsigned token (alg: none)', async () => `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(valid())}.`],
    [
      'a token without sub',
      async () => {
        const { sub: _drop, ...rest } = valid();
        return `Bearer ${await hs256(rest)}`;
      },
    ],
    ['a token with an empty sub', async () => `Bearer ${await hs256({ ...valid(), sub: '' })}`],
    [
      'a token without exp',
      async () => {
        const { exp: _drop, ...rest } = valid();
        return `Bearer ${await hs256(rest)}`;
      },
    ],
    ['a token from another issuer', async () => `Bearer ${await hs256({ ...valid(), iss: 'https://evil.example' })}`],
    [
      'a token for another audience',
      async () => `Bearer ${await hs256({ ...valid(), aud: 'https://other-api.example' })}`,
    ],
    [
      'a tampered payload',
      async () => {
        const [header, , signature] = (await hs256(valid())).split('.');
        return `Bearer ${header}.${b64({ ...valid(), sub: 'admin' })}.${signature}`;
      },
    ],
    ['a stripped signature', async () => `Bearer ${(await hs256(valid())).split('.').slice(0, 2).join('.')}.`],
    [
      'HS256 signed with the JWKS public key as the secret',
      async () => {
        const jwk = (await (await fetch(jwksUrl)).json()) as { keys: object[] };
        return `Bearer ${await hs256(valid(), JSON.stringify(jwk.keys[0]))}`;
      },
    ],
    [
      'an EdDSA token signed by a key the JWKS does not publish',
      async () => {
        const rogue = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
        return `Bearer ${await asymmetric(rogue.privateKey, 'EdDSA', 'ed-1')}`;
      },
    ],
    [
      'a token issued in the future (iat beyond the 5 s tolerance)',
      async () => `Bearer ${await hs256({ ...valid(), iat: now() + 600 })}`,
    ],
    [
      'a token valid for 100 years (longer than the 24 h maximum age)',
      async () => `Bearer ${await hs256({ ...valid(), iat: now(), exp: now() + 100 * 365 * 86_400 })}`,
    ],
    [
      'a token issued more than 24 h ago, though not expired',
      async () => `Bearer ${await hs256({ ...valid(), iat: now() - 86_400 - 60, exp: now() + 300 })}`,
    ],
    ['the Basic scheme', async () => `Basic ${Buffer.from('alice:secret').toString('base64')}`],
    ['a token with no scheme', async () => hs256(valid())],
    ['a 10 KB token', async () => `Bearer ${await hs256({ ...valid(), pad: 'x'.repeat(10 * 1024) })}`],
  ];

  it.each(cases)('rejects %s', async (_label, authorization) => {
    const res = await me(await authorization());
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
    const problem = (await res.json()) as Record<string, unknown>;
    expect(problem).toMatchObject({
      type: 'urn:tasks-api:problem:invalid-token',
      status: 401,
      request_id: res.headers.get('x-request-id'),
    });
    expect(JSON.stringify(problem)).not.toMatch(/stack|at .*\.js/);
  });

  it('logs the reason at warn with the request id, never the token', async () => {
    const token = await hs256({ ...valid(), exp: now() - 60 });
    const res = await me(`Bearer ${token}`);
    const requestId = res.headers.get('x-request-id');
    const lines = server.logs.filter((line) => line.request_id === requestId);
    expect(lines.find((line) => line.level === 'warn')).toMatchObject({
      message: 'authentication failed',
      code: 'INVALID_TOKEN',
      reason: 'ERR_JWT_EXPIRED',
    });
    expect(lines.find((line) => line.message === 'request')).toMatchObject({
      status: 401,
      route: '/api/v1/me',
      method: 'GET',
    });
    expect(JSON.stringify(server.logs)).not.toContain(token.split('.')[2]);
  });
});

describe('key-location headers are never followed', () => {
  let attacker: Awaited<ReturnType<typeof serve>>;
  let attackerHits = 0;
  let rogue: Awaited<ReturnType<typeof generateKeyPair>>;
  let roguePublic: Record<string, unknown>;
  beforeAll(async () => {
    rogue = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    roguePublic = { ...(await exportJWK(rogue.publicKey)), kid: 'rogue', alg: 'EdDSA' };
    attacker = await serve((_req, res) => {
      attackerHits += 1;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ keys: [roguePublic] }));
    });
  });
  afterAll(() => attacker.stop());

  const signed = (header: Record<string, unknown>) =>
    new SignJWT(valid()).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', ...header }).sign(rogue.privateKey);

  it.each([
    ['an embedded jwk', () => ({ jwk: roguePublic })],
    ['an embedded jwk with the kid of a published key', () => ({ jwk: roguePublic, kid: 'ed-1' })],
    ['a jku pointing at another key set', () => ({ jku: attacker.url.href, kid: 'rogue' })],
    ['an x5u pointing elsewhere', () => ({ x5u: attacker.url.href, kid: 'rogue' })],
    ['a kid that is a URL', () => ({ kid: attacker.url.href })],
    ['a kid that is a path', () => ({ kid: '../../../../dev/null' })],
  ])('rejects a token signed by a foreign key with %s, and fetches nothing from it', async (_label, header) => {
    const res = await me(`Bearer ${await signed(header())}`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
    expect(await res.json()).toMatchObject({ type: 'urn:tasks-api:problem:invalid-token' });
    expect(attackerHits).toBe(0);
  });
});

describe('the token travels in exactly one Authorization header', () => {
  it('ignores a valid token in the query string: 401, as if none was sent', async () => {
    const token = await hs256(valid());
    for (const name of ['access_token', 'token']) {
      const res = await fetch(`${server.url}/api/v1/me?${name}=${token}`);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
  });

  it('rejects two Authorization headers even when both carry valid tokens', async () => {
    const [first, second] = [await hs256(valid()), await hs256(valid())];
    const { status, headers, body } = await rawGet(`${server.url}/api/v1/me`, [`Bearer ${first}`, `Bearer ${second}`]);
    expect(status).toBe(401);
    expect(headers['www-authenticate']).toMatch(/^Bearer error="invalid_token"/);
    expect(JSON.parse(body)).toMatchObject({
      type: 'urn:tasks-api:problem:invalid-token',
      detail: 'Send exactly one Authorization header.',
    });
    // Each alone is accepted, so the refusal is about the duplication.
    expect((await me(`Bearer ${first}`)).status).toBe(200);
  });
});

/** A GET with the Authorization header sent once per value (fetch would join them into one). */
function rawGet(url: string, authorizations: string[]) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = request(url);
    req.setHeader('Authorization', authorizations);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject).end();
  });
}

describe('scopes declared per operation', () => {
  it('lets a read-only token read but answers 403 with insufficient_scope on writes', async () => {
    const token = await hs256({ ...valid(), scope: 'tasks:read' });
    expect((await me(`Bearer ${token}`)).status).toBe(200);
    const res = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'nope' }),
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toBe('Bearer error="insufficient_scope", scope="tasks:write"');
    expect(await res.json()).toMatchObject({ type: 'urn:tasks-api:problem:insufficient-scope', status: 403 });
  });

  it('grants nothing for a scope claim without this API’s scopes', async () => {
    expect((await me(`Bearer ${await hs256({ ...valid(), scope: 'openid profile' })}`)).status).toBe(403);
  });
});

describe('a JWKS that cannot be fetched fails closed', () => {
  // The server's own JWKS timeout (2 s), not a shortened one: "slow" is slower than that.
  async function serverWithJwks(url: URL) {
    return startServer({ jwt: { jwksUrl: url } });
  }

  it.each([
    [
      'down',
      async () => {
        const probe = createServer().listen(0, '127.0.0.1');
        await new Promise((resolve) => probe.once('listening', resolve));
        const port = (probe.address() as AddressInfo).port;
        await new Promise((resolve) => probe.close(resolve));
        return { url: new URL(`http://127.0.0.1:${port}/jwks`), stop: async () => {} };
      },
    ],
    ['answering garbage', async () => serve((_req, res) => res.end('<html>not json</html>'))],
    [
      'slower than 2 s',
      async () =>
        serve((_req, res) => {
          setTimeout(() => res.end('{"keys":[]}'), 2500).unref();
        }),
    ],
  ])('answers 503 with Retry-After when the JWKS is %s, and never accepts the token', async (_label, make) => {
    const upstream = await make();
    const api = await serverWithJwks(upstream.url);
    try {
      const token = await asymmetric(edPrivate, 'EdDSA', 'ed-1');
      const res = await fetch(`${api.url}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.json()).toMatchObject({ type: 'urn:tasks-api:problem:service-unavailable', status: 503 });
    } finally {
      await api.close();
      await upstream.stop();
    }
  });
});

async function serve(handler: Parameters<typeof createServer>[1]) {
  const upstream = createServer(handler);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  return {
    url: new URL(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/jwks`),
    stop: () =>
      new Promise<void>((resolve) => {
        upstream.closeAllConnections();
        upstream.close(() => resolve());
      }),
  };
}

describe('each app verifies with its own keys', () => {
  // The contract validator is built once per contract document and process (src/http/openapi.ts),
  // and the token is checked by the security handler of the app the request came through.
  it('accepts a token at the server whose secret signed it, refuses it at another in the same process, and logs its own refusals', async () => {
    const [one, two] = await Promise.all([startServer(), startServer()]);
    try {
      const [mine, theirs] = [await one.tokenFor(), await two.tokenFor()];
      const get = (at: TestServer, token: string) =>
        fetch(`${at.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${token}` } });
      expect([
        (await get(one, mine)).status,
        (await get(two, theirs)).status,
        (await get(one, theirs)).status,
        (await get(two, mine)).status,
      ]).toEqual([200, 200, 401, 401]);
      // A scope refused by the security handler is logged by the app the request came through.
      const readOnly = await two.tokenFor(undefined, { scope: 'tasks:read' });
      const forbidden = await fetch(`${two.url}/api/v1/tasks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${readOnly}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ title: 'not mine to write' }),
      });
      const requestId = forbidden.headers.get('x-request-id');
      const warned = (at: TestServer) =>
        at.logs.filter((line) => line.request_id === requestId && line.message === 'authentication failed');
      expect([forbidden.status, warned(two).length, warned(one).length]).toEqual([403, 1, 0]);
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });
});
