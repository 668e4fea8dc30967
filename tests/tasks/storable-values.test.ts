import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT } from 'jose';
import { newUser, startServer, TEST_ISSUER, type TestServer } from '../helpers/server.js';

let server: TestServer;
let token: string;
beforeAll(async () => {
  server = await startServer();
  token = await server.tokenFor();
});
afterAll(() => server.close());

/** POST /tasks with a raw JSON text (so lone surrogates travel as `\ud800` escapes, as a client would send them). */
const postRaw = (json: string) =>
  fetch(`${server.url}/api/v1/tasks`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: json,
  });
const list = (query: string) =>
  fetch(`${server.url}/api/v1/tasks?${query}`, { headers: { Authorization: `Bearer ${token}` } });

async function expect422(res: Response, where: 'body' | 'query', pointer: string) {
  expect(res.status).toBe(422);
  const problem = (await res.json()) as { type: string; errors: { in: string; pointer: string }[] };
  expect(problem.type).toBe('urn:tasks-api:problem:validation-failed');
  expect(problem.errors).toContainEqual(expect.objectContaining({ in: where, pointer }));
}

describe('text PostgreSQL cannot store as sent is a 422 naming the field, never a 500', () => {
  it.each([
    ['U+0000 in the title', '{"title":"a\\u0000b"}', '/title'],
    ['a lone high surrogate in the title', '{"title":"a\\ud800b"}', '/title'],
    ['a lone low surrogate at the end of the title', '{"title":"ab\\udc00"}', '/title'],
    ['U+0000 in the description', '{"title":"ok","description":"x\\u0000"}', '/description'],
    ['a lone surrogate in the description', '{"title":"ok","description":"\\ud83d"}', '/description'],
    ['U+0000 in a tag', '{"title":"ok","tags":["home","a\\u0000"]}', '/tags/1'],
    ['a lone surrogate in a tag', '{"title":"ok","tags":["\\udfff"]}', '/tags/0'],
  ])('%s', async (_label, json, pointer) => {
    await expect422(await postRaw(json), 'body', pointer);
  });

  it('stores text with paired surrogates (emoji) exactly as sent', async () => {
    const res = await postRaw('{"title":"ship it \\ud83d\\ude80","tags":["\\ud83c\\udff7"]}');
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ title: 'ship it 🚀', tags: ['🏷'] });
  });

  it.each([
    ['q with U+0000', 'q=a%00b', '/q'],
    ['a tag filter with U+0000', 'tag=%00', '/tag/0'],
  ])('%s in the query', async (_label, query, pointer) => {
    await expect422(await list(query), 'query', pointer);
  });

  it('refuses a token whose subject PostgreSQL could not store, with 401', async () => {
    for (const sub of ['user\u0000admin', 'user\ud800']) {
      const bad = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(sub)
        .setIssuer(TEST_ISSUER)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(server.secret));
      const res = await fetch(`${server.url}/api/v1/tasks`, { headers: { Authorization: `Bearer ${bad}` } });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ type: 'urn:tasks-api:problem:invalid-token' });
    }
  });
});

describe('date-times PostgreSQL can store and the API can write back', () => {
  it.each([
    ['an offset beyond ±15:59', '2026-06-01T12:00:00+16:00'],
    ['year 0000', '0000-06-01T00:00:00Z'],
    ['a leap second', '2026-06-30T23:59:60Z'],
    ['an instant that is year 10000 in UTC', '9999-12-31T23:00:00-05:00'],
    ['a space instead of T', '2026-06-01 12:00:00Z'],
    ['29 February of a common year', '2023-02-29T12:00:00Z'],
    ['hour 24', '2026-06-01T24:00:00Z'],
    ['no offset', '2026-06-01T12:00:00'],
  ])('refuses %s with 422, in the body and in the due filters', async (_label, value) => {
    await expect422(await postRaw(JSON.stringify({ title: 'dated', due_at: value })), 'body', '/due_at');
    await expect422(await list(`due_before=${encodeURIComponent(value)}`), 'query', '/due_before');
    await expect422(await list(`due_after=${encodeURIComponent(value)}`), 'query', '/due_after');
  });

  it.each([
    ['the first instant of year 1', '0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
    ['the last millisecond of year 9999', '9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
    [
      'digits beyond the millisecond (dropped, not rounded into year 10000)',
      '9999-12-31T23:59:59.9999999Z',
      '9999-12-31T23:59:59.999Z',
    ],
    [
      'the last day of year 9999 with the largest positive offset',
      '9999-12-31T23:30:00+15:59',
      '9999-12-31T07:31:00.000Z',
    ],
    ['the largest offset', '2026-06-01T12:00:00-15:59', '2026-06-02T03:59:00.000Z'],
    ['29 February of a leap year, lower-case t and z', '2024-02-29t12:00:00z', '2024-02-29T12:00:00.000Z'],
  ])('accepts %s and writes it back as RFC 3339 with a four-digit year', async (_label, value, written) => {
    const res = await postRaw(JSON.stringify({ title: 'dated', due_at: value }));
    expect(res.status).toBe(201);
    expect(((await res.json()) as { due_at: string }).due_at).toBe(written);
  });

  it('accepts back every cursor it issues, for tasks due at the ends of the range', async () => {
    const owner = await server.tokenFor(newUser());
    const post = (due_at: string) =>
      fetch(`${server.url}/api/v1/tasks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${owner}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ title: due_at, due_at }),
      });
    for (const due of [
      '0001-01-01T00:00:00Z',
      '0001-01-01T00:00:00.001Z',
      '9999-12-31T23:59:59.999999Z',
      '9999-12-31T23:59:59.998Z',
    ])
      expect((await post(due)).status).toBe(201);
    for (const sort of ['due_at', '-due_at']) {
      const seen: string[] = [];
      let next = `${server.url}/api/v1/tasks?limit=1&sort=${sort}`;
      for (let page = 0; page < 10 && next; page += 1) {
        const res = await fetch(next, { headers: { Authorization: `Bearer ${owner}` } });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { items: { title: string }[]; next_cursor: string | null };
        seen.push(...body.items.map((t) => t.title));
        next = body.next_cursor ? `${server.url}/api/v1/tasks?limit=1&sort=${sort}&cursor=${body.next_cursor}` : '';
      }
      expect(seen).toHaveLength(4);
    }
  });
});
