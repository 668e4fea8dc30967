import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

describe('logs of a full request cycle', () => {
  it('hold an access line per request and security events, but never a token, password or cookie', async () => {
    const token = await server.tokenFor();
    const readOnly = await server.tokenFor(undefined, { scope: 'tasks:read' });
    const expired = await server.tokenFor(undefined, {}, { expiresIn: '-1h' });
    const password = 'correct-horse-battery-staple';
    const cookie = 'session=s3cr3t-cookie-value';
    const auth = (t: string) => ({ Authorization: `Bearer ${t}`, Cookie: cookie, 'Content-Type': 'application/json' });
    const before = server.logs.length;

    const statuses = [
      (
        await fetch(`${server.url}/api/v1/tasks`, {
          method: 'POST',
          headers: auth(token),
          body: JSON.stringify({ title: 'logged' }),
        })
      ).status,
      (await fetch(`${server.url}/api/v1/tasks`, { headers: auth(token) })).status,
      (
        await fetch(`${server.url}/api/v1/tasks`, {
          method: 'POST',
          headers: auth(token),
          body: JSON.stringify({ title: 'x', password }),
        })
      ).status,
      (await fetch(`${server.url}/api/v1/tasks?access_token=${token}`, { headers: { Cookie: cookie } })).status,
      (await fetch(`${server.url}/api/v1/tasks`, { headers: auth(`${token.slice(0, -4)}AAAA`) })).status,
      (await fetch(`${server.url}/api/v1/tasks`, { headers: auth(expired) })).status,
      (
        await fetch(`${server.url}/api/v1/tasks`, {
          method: 'POST',
          headers: auth(readOnly),
          body: JSON.stringify({ title: 'no' }),
        })
      ).status,
      (
        await fetch(`${server.url}/api/v1/tasks`, {
          method: 'POST',
          headers: auth(token),
          body: `{"title":"x","password":"${password}"`,
        })
      ).status,
    ];
    // The token in the query string is never read: no Authorization header means 401.
    expect(statuses).toEqual([201, 200, 422, 401, 401, 401, 403, 400]);

    const lines = server.logs.slice(before);
    expect(lines.filter((line) => line.message === 'request')).toHaveLength(statuses.length);
    const securityEvents = lines.filter((line) => line.message === 'authentication failed');
    expect(securityEvents.map((line) => [line.level, line.code])).toEqual([
      ['warn', 'MISSING_TOKEN'],
      ['warn', 'INVALID_TOKEN'],
      ['warn', 'INVALID_TOKEN'],
      ['warn', 'INSUFFICIENT_SCOPE'],
    ]);
    expect(securityEvents.every((line) => typeof line.request_id === 'string')).toBe(true);
    const text = JSON.stringify(lines);
    for (const secret of [token, token.split('.')[2]!, readOnly, expired, password, 's3cr3t-cookie-value']) {
      expect(text).not.toContain(secret);
    }
  });
});
