// @tasks-api/client's session against the real API's built-in issuer: login, register, refresh
// (proactive, and after a 401, single-flight), rotation, logout, and a refused refresh token.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  createSession,
  createTasksClient,
  ProblemError,
  type SessionLocks,
  type SessionStorage,
} from '../../packages/client/src/index.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ builtinAuth: true });
});
afterAll(() => server.close());

const PASSWORD = 'correct horse battery staple';
const newEmail = () => `client-${randomUUID()}@example.com`;

/** A storage the test can read and tamper with, as localStorage would be. */
function inspectableStorage() {
  let value: string | null = null;
  const storage: SessionStorage = {
    get: () => value,
    set: (v) => {
      value = v;
    },
    remove: () => {
      value = null;
    },
  };
  return {
    storage,
    tokens: () =>
      value === null
        ? null
        : (JSON.parse(value) as { access_token: string; refresh_token: string; expires_at: number }),
    patch(changes: Record<string, unknown>) {
      value = JSON.stringify({ ...JSON.parse(value!), ...changes });
    },
  };
}

/** The global fetch, recording each request's method, path and headers (the server is real). */
function recordingFetch() {
  const sent: {
    method: string;
    path: string;
    authorization: string | null;
    idempotencyKey: string | null;
    body: string;
  }[] = [];
  const fetch = async (request: Request): Promise<Response> => {
    const body = request.body ? await request.clone().text() : '';
    sent.push({
      method: request.method,
      path: new URL(request.url).pathname,
      authorization: request.headers.get('Authorization'),
      idempotencyKey: request.headers.get('Idempotency-Key'),
      body,
    });
    return globalThis.fetch(request);
  };
  return { fetch, sent, refreshes: () => sent.filter((r) => r.path === '/api/v1/auth/refresh').length };
}

/** An access token the server refuses (its signature broken) while the session still believes in it. */
const broken = (token: string) => `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;

async function registered() {
  const store = inspectableStorage();
  const net = recordingFetch();
  const session = createSession({ baseUrl: server.url, storage: store.storage, fetch: net.fetch });
  const email = newEmail();
  await session.register({ email, password: PASSWORD });
  return { store, net, session, email };
}

describe('createSession', () => {
  it('registers (the API logs the new account in), and the client sends its access token', async () => {
    const { session, store, email } = await registered();
    expect(await session.isLoggedIn()).toBe(true);
    expect(store.tokens()).toMatchObject({ access_token: expect.any(String), refresh_token: expect.any(String) });
    const api = createTasksClient({ baseUrl: server.url, session });
    const { data, response } = await api.GET('/api/v1/me');
    expect(response.status).toBe(200);
    expect(data?.email).toBe(email);
  });

  it('logs in; a wrong password is a ProblemError 401 and stores nothing', async () => {
    const { session: first, email } = await registered();
    await first.logout();
    const store = inspectableStorage();
    const session = createSession({ baseUrl: server.url, storage: store.storage });
    const failure = await session.login({ email, password: 'not the password' }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ProblemError);
    expect(failure).toMatchObject({ status: 401, problem: { status: 401 } });
    expect(store.tokens()).toBeNull();

    const tokens = await session.login({ email, password: PASSWORD });
    expect(tokens.token_type).toBe('Bearer');
    expect(store.tokens()?.refresh_token).toBe(tokens.refresh_token);
    // a second session over the same storage (a page reload) is logged in too
    const reloaded = createSession({ baseUrl: server.url, storage: store.storage });
    expect(await reloaded.accessToken()).toBe(tokens.access_token);
  });

  it('register with a taken email is a ProblemError 409', async () => {
    const { email } = await registered();
    const failure = await createSession({ baseUrl: server.url })
      .register({ email, password: PASSWORD })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ProblemError);
    expect((failure as ProblemError).status).toBe(409);
  });

  it('refresh rotates the refresh token and stores the new one; the used one is then refused', async () => {
    const { session, store } = await registered();
    const before = store.tokens()!;
    const tokens = await session.refresh();
    expect(tokens.refresh_token).not.toBe(before.refresh_token);
    expect(store.tokens()).toMatchObject({ access_token: tokens.access_token, refresh_token: tokens.refresh_token });
    const reused = await fetch(`${server.url}/api/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: before.refresh_token }),
    });
    expect(reused.status).toBe(401);
  });

  it('refreshes proactively when the access token is about to expire', async () => {
    const { session, store, net } = await registered();
    const before = store.tokens()!;
    expect(await session.accessToken()).toBe(before.access_token);
    expect(net.refreshes()).toBe(0);
    store.patch({ expires_at: Date.now() + 5_000 }); // within the 30 s leeway
    const token = await session.accessToken();
    expect(net.refreshes()).toBe(1);
    expect(token).not.toBe(before.access_token);
    expect(store.tokens()!.refresh_token).not.toBe(before.refresh_token);
  });

  it('logout revokes the login at the API and clears the storage', async () => {
    const { session, store } = await registered();
    const { refresh_token } = store.tokens()!;
    await session.logout();
    expect(store.tokens()).toBeNull();
    expect(await session.isLoggedIn()).toBe(false);
    expect(await session.accessToken()).toBeUndefined();
    const after = await fetch(`${server.url}/api/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token }),
    });
    expect(after.status).toBe(401);
  });

  it('logout clears the storage even when the API cannot be reached, and says so', async () => {
    const { store } = await registered();
    const gone = await startServer({ builtinAuth: true });
    await gone.close(); // a port nothing listens on any more
    const offline = createSession({ baseUrl: gone.url, storage: store.storage });
    await expect(offline.logout()).rejects.toThrow();
    expect(store.tokens()).toBeNull();
  });
});

describe('createTasksClient with a session', () => {
  it('answers concurrent 401s with one refresh, and retries each request once, bodies and Idempotency-Key included', async () => {
    const { session, store, net } = await registered();
    const api = createTasksClient({ baseUrl: server.url, session, fetch: net.fetch });
    const { access_token, refresh_token } = store.tokens()!;
    store.patch({ access_token: broken(access_token) }); // the session believes in it, the API does not

    const [me, list, created, again] = await Promise.all([
      api.GET('/api/v1/me'),
      api.GET('/api/v1/tasks'),
      api.POST('/api/v1/tasks', { body: { title: 'Sent twice, created once', tags: ['retry'] } }),
      api.GET('/api/v1/tags'),
    ]);
    expect([me.response.status, list.response.status, created.response.status, again.response.status]).toEqual([
      200, 200, 201, 200,
    ]);
    expect(net.refreshes()).toBe(1);
    expect(store.tokens()!.refresh_token).not.toBe(refresh_token);

    // The POST went twice: refused, then retried with the new token, the same body and the same key.
    const posts = net.sent.filter((r) => r.method === 'POST' && r.path === '/api/v1/tasks');
    expect(posts).toHaveLength(2);
    expect(posts[0]!.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(posts[1]!.idempotencyKey).toBe(posts[0]!.idempotencyKey);
    expect(posts[1]!.body).toBe(posts[0]!.body);
    expect(posts[0]!.authorization).not.toBe(posts[1]!.authorization);
    expect(created.data?.title).toBe('Sent twice, created once');
    const { data: page } = await api.GET('/api/v1/tasks', { params: { query: { tag: ['retry'] } } });
    expect(page?.items).toHaveLength(1);
  });

  it('a 401 after a refresh that already happened retries with the new token, without refreshing again', async () => {
    const { session, store, net } = await registered();
    const api = createTasksClient({ baseUrl: server.url, session, fetch: net.fetch });
    await session.refresh();
    expect(net.refreshes()).toBe(1);
    // a request that went out with a refused token answers 401; the session already has a newer one
    const stale = broken(store.tokens()!.access_token);
    const { response } = await api.GET('/api/v1/me', { headers: { Authorization: `Bearer ${stale}` } });
    expect(response.status).toBe(200);
    expect(net.refreshes()).toBe(1);
  });

  it('when the refresh is refused, clears the session and returns the 401', async () => {
    const { session, store, net } = await registered();
    const api = createTasksClient({ baseUrl: server.url, session, fetch: net.fetch });
    const used = store.tokens()!.refresh_token;
    await session.refresh(); // `used` is now used up
    store.patch({ access_token: broken(store.tokens()!.access_token), refresh_token: used });

    const [first, second] = await Promise.all([api.GET('/api/v1/me'), api.GET('/api/v1/tasks')]);
    expect(first.response.status).toBe(401);
    expect(second.response.status).toBe(401);
    expect(first.error).toMatchObject({ status: 401 });
    expect(net.refreshes()).toBe(2); // the test's own refresh, and one for both requests
    expect(store.tokens()).toBeNull();
    expect(await session.isLoggedIn()).toBe(false);
    // logged out: requests go without a token, and are not retried
    const before = net.sent.length;
    expect((await api.GET('/api/v1/me')).response.status).toBe(401);
    expect(net.sent.length).toBe(before + 1);
  });

  it('two tabs on one storage, with Web Locks: one refresh, the other tab adopts its tokens, nobody is logged out', async () => {
    const { store, net } = await registered();
    // navigator.locks' exclusive mode, as a browser grants it: one holder per name at a time.
    const queues = new Map<string, Promise<unknown>>();
    const locks: SessionLocks = {
      request(name, callback) {
        const granted = (queues.get(name) ?? Promise.resolve()).then(() => callback({ name }));
        queues.set(
          name,
          granted.catch(() => undefined),
        );
        return granted;
      },
    };
    const tab1 = createSession({ baseUrl: server.url, storage: store.storage, fetch: net.fetch, locks });
    const tab2 = createSession({ baseUrl: server.url, storage: store.storage, fetch: net.fetch, locks });
    const api1 = createTasksClient({ baseUrl: server.url, session: tab1, fetch: net.fetch });
    const api2 = createTasksClient({ baseUrl: server.url, session: tab2, fetch: net.fetch });
    store.patch({ access_token: broken(store.tokens()!.access_token) });

    const results = await Promise.all([
      api1.GET('/api/v1/me'),
      api2.GET('/api/v1/me'),
      api1.GET('/api/v1/tasks'),
      api2.GET('/api/v1/tasks'),
    ]);
    expect(results.map((r) => r.response.status)).toEqual([200, 200, 200, 200]);
    expect(net.refreshes()).toBe(1);
    // the login is intact: its newest refresh token still works
    await expect(tab2.refresh()).resolves.toMatchObject({ token_type: 'Bearer' });
  });

  it("does not take a sign-in operation's 401 for an expired token", async () => {
    const { session, net, email } = await registered();
    const api = createTasksClient({ baseUrl: server.url, session, fetch: net.fetch });
    const { response } = await api.POST('/api/v1/auth/login', { body: { email, password: 'not the password' } });
    expect(response.status).toBe(401);
    expect(net.refreshes()).toBe(0);
    expect(await session.isLoggedIn()).toBe(true);
  });

  it('refuses token and session together', () => {
    expect(() =>
      createTasksClient({ baseUrl: server.url, token: 'x', session: createSession({ baseUrl: server.url }) }),
    ).toThrow(TypeError);
  });
});
