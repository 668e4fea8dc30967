import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { createTasksClient, type TasksClient } from '../../packages/client/src/index.js';
import { startMain } from '../helpers/process.js';
import { startServer, type TestServer } from '../helpers/server.js';

/**
 * examples/web in headless Chromium: the page served by its own dev server (serve.mjs, as
 * `npm run example:web` runs it) on one loopback port, the real API with the built-in issuer on
 * another, CORS_ORIGINS naming the page's origin. Every request leaving this machine is refused
 * and recorded.
 */
const CHROMIUM = '/usr/bin/chromium';

let server: TestServer;
let example: ChildProcess;
let outdir: string;
/** The page's origin: http://127.0.0.1:<port>, the one CORS_ORIGINS lists. */
let origin: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;

const offMachine: string[] = [];
const failedRequests: string[] = [];
const consoleErrors: string[] = [];
const pageErrors: string[] = [];
/** Every API request the page made: method, path and the headers that matter here. */
const apiRequests: { method: string; path: string; ifMatch?: string; idempotencyKey?: string; status?: number }[] = [];

const email = `ada-${randomUUID()}@example.com`;
const password = 'correct horse battery staple';
const suffix = randomUUID().slice(0, 8);
const titles = { milk: `Buy milk ${suffix}`, passport: `Renew passport ${suffix}`, call: `Call Ada ${suffix}` };
const storageKey = () => `tasks-api.session ${server.url}`;

/** Starts `node examples/web/serve.mjs` on a free loopback port and resolves to the origin it prints. */
async function startExample(): Promise<string> {
  outdir = await mkdtemp(join(tmpdir(), 'web-example-'));
  example = spawn(
    process.execPath,
    [
      fileURLToPath(new URL('../../examples/web/serve.mjs', import.meta.url)),
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--outdir',
      outdir,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve.mjs did not start:\n${output}`)), 15_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      const found = /^tasks-api web example: (http:\/\/127\.0\.0\.1:\d+)\/$/m.exec(output);
      if (found) {
        clearTimeout(timer);
        expect(output).toContain(`CORS_ORIGINS=${found[1]} npm start`);
        resolve(found[1]!);
      }
    };
    example.stdout!.on('data', read);
    example.stderr!.on('data', read);
    example.once('exit', (code) => reject(new Error(`serve.mjs exited with ${code}:\n${output}`)));
  });
}

/** A page whose network is this machine only, with every failure, console error and API request recorded. */
async function openPage(ctx: BrowserContext, record: boolean): Promise<Page> {
  const opened = await ctx.newPage();
  await opened.route('**/*', (route) => {
    const { hostname, href } = new URL(route.request().url());
    if (hostname === '127.0.0.1' || hostname === 'localhost') return route.continue();
    offMachine.push(href);
    return route.abort('internetdisconnected');
  });
  if (!record) return opened;
  opened.on('pageerror', (error) => pageErrors.push(String(error)));
  opened.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') consoleErrors.push(message.text());
  });
  opened.on('requestfailed', (request) =>
    failedRequests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`),
  );
  opened.on('request', (request) => {
    if (!request.url().startsWith(server.url)) return;
    const headers = request.headers();
    apiRequests.push({
      method: request.method(),
      path: new URL(request.url()).pathname,
      ifMatch: headers['if-match'],
      idempotencyKey: headers['idempotency-key'],
    });
  });
  opened.on('response', (response) => {
    const entry = apiRequests.findLast(
      (r) =>
        r.status === undefined &&
        r.method === response.request().method() &&
        response.url().startsWith(server.url) &&
        r.path === new URL(response.url()).pathname,
    );
    if (entry) entry.status = response.status();
  });
  return opened;
}

const items = () => page.locator('#task-list li');
const itemIn = (p: Page, title: string) =>
  p.locator('#task-list li').filter({ has: p.locator('.title', { hasText: title }) });
const item = (title: string) => itemIn(page, title);
const titlesIn = async (p: Page) => p.locator('#task-list li .title').allTextContents();
const titlesShown = async () => titlesIn(page);
/** The live indicator showing `state` (`Live`, `Reconnecting…`). */
const liveIn = (p: Page, state: string) => p.locator('#live').filter({ hasText: new RegExp(`^${state}$`) });
/** localStorage's `key` in `ctx` (the page's origin), or null. */
async function storedIn(ctx: BrowserContext, key: string): Promise<string | null> {
  const { origins } = await ctx.storageState();
  return origins.find((o) => o.origin === origin)?.localStorage.find((entry) => entry.name === key)?.value ?? null;
}
/** The session the page keeps in localStorage, or null. */
const stored = () => storedIn(context, storageKey());
const isStream = (request: Request) => new URL(request.url()).pathname === '/api/v1/changes/stream';

/** Waits (at most `timeout` ms) until `p` lists exactly `expected`, in that order. */
async function listed(p: Page, expected: string[], timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  let shown = await titlesIn(p);
  while (JSON.stringify(shown) !== JSON.stringify(expected)) {
    if (Date.now() > deadline)
      throw new Error(`expected the list ${JSON.stringify(expected)}, it shows ${JSON.stringify(shown)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
    shown = await titlesIn(p);
  }
}

/** Fills the new-task form and submits it; resolves once the page is done with it (its button enabled again). */
async function addTaskIn(p: Page, title: string, fields: { priority?: string; due?: string } = {}): Promise<void> {
  await p.getByLabel('Title', { exact: true }).fill(title);
  if (fields.priority) await p.getByLabel('Priority').selectOption(fields.priority);
  if (fields.due) await p.getByLabel(/Due date/).fill(fields.due);
  await p.getByRole('button', { name: 'Add task' }).click();
  // The stream can show the task before the POST's answer resets the form: typing the next title
  // before then would be cleared.
  await p.locator('#new-task button:enabled').waitFor();
}
const addTask = (title: string, fields: { priority?: string; due?: string } = {}) => addTaskIn(page, title, fields);

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  origin = await startExample();
  [server, browser] = await Promise.all([
    startServer({ builtinAuth: true, corsOrigins: [origin] }),
    chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    }),
  ]);
  expect(new URL(server.url).port).not.toBe(new URL(origin).port);
  context = await browser.newContext();
  page = await openPage(context, true);
  page.setDefaultTimeout(10_000);
  // ?api= names the API at run time; ?limit=2 makes pages short enough to page through.
  await page.goto(`${origin}/?api=${encodeURIComponent(server.url)}&limit=2`, { waitUntil: 'load' });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  example?.kill('SIGTERM');
  await server?.close();
  if (outdir) await rm(outdir, { recursive: true, force: true });
});

describe('examples/web against the real API, cross-origin, in headless Chromium', () => {
  it('shows the login form to a visitor, and shows the API’s 422 for a short password next to the field', async () => {
    await page.getByRole('heading', { name: 'Log in or create an account' }).waitFor();
    expect(await page.locator('#tasks').isHidden()).toBe(true);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.locator('#password-error').filter({ hasText: 'must NOT have fewer than 8 characters' }).waitFor();
    expect(await page.getByLabel('Password').getAttribute('aria-invalid')).toBe('true');
  });

  it('registers, stores the session in localStorage, and stays logged in across a reload', async () => {
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page
      .locator('#whoami')
      .filter({ hasText: `Logged in as ${email}` })
      .waitFor();
    await page.locator('#empty').waitFor({ state: 'visible' });
    expect(JSON.parse((await stored())!)).toMatchObject({
      access_token: expect.any(String),
      refresh_token: expect.stringMatching(/^rt_/),
    });
    // Live: no change token stored yet, so a resync (a token for now, then every task), then the stream.
    await liveIn(page, 'Live').waitFor();
    const { access_token } = JSON.parse((await stored())!) as { access_token: string };
    const { data: me } = await server.client(access_token).GET('/api/v1/me');
    const changeKey = `tasks-api.changes ${server.url} ${me!.sub}`;
    expect(await storedIn(context, changeKey)).toMatch(/^[\w-]+$/);
    const changeReads = () => apiRequests.filter((r) => r.path === '/api/v1/changes').length;
    expect(changeReads()).toBe(1);

    await page.reload({ waitUntil: 'load' });
    await page.locator('#whoami').filter({ hasText: email }).waitFor();
    expect(await page.locator('#auth').isHidden()).toBe(true);
    // The reload resumes from the stored token: live again without another resync.
    await liveIn(page, 'Live').waitFor();
    expect(changeReads()).toBe(1);
    expect(apiRequests.filter((r) => r.path === '/api/v1/changes/stream')).toEqual([
      expect.objectContaining({ method: 'GET', status: 200 }),
      expect.objectContaining({ method: 'GET', status: 200 }),
    ]);
  });

  it('creates tasks (with an Idempotency-Key) and lists them newest first, a page at a time', async () => {
    await addTask(titles.milk);
    await item(titles.milk).waitFor();
    await addTask(titles.passport, { priority: 'high', due: '2030-12-01' });
    await item(titles.passport).waitFor();
    await addTask(titles.call, { priority: 'low' });
    await item(titles.call).waitFor();
    expect(await page.getByLabel('Title', { exact: true }).inputValue()).toBe(''); // the form was reset

    // Two to a page: the newest two, then the first one on the next page. (The stream may show the
    // new task at the top a moment before the page is read again; then there are three.)
    await listed(page, [titles.call, titles.passport]);
    await expect(item(titles.passport).locator('.meta').textContent()).resolves.toMatch(/^high priority, due \S+$/);
    await expect(item(titles.passport).locator('time').getAttribute('datetime')).resolves.toMatch(/^2030-1[12]-\d\dT/);
    await page.getByRole('button', { name: 'Next page' }).click();
    await item(titles.milk).waitFor();
    expect(await titlesShown()).toEqual([titles.milk]);
    expect(await page.getByRole('button', { name: 'Next page' }).isHidden()).toBe(true);
    await page.getByRole('button', { name: 'First page' }).click();
    await item(titles.call).waitFor();
    expect(await titlesShown()).toEqual([titles.call, titles.passport]);

    const creates = apiRequests.filter((r) => r.method === 'POST' && r.path === '/api/v1/tasks');
    expect(creates).toHaveLength(3);
    for (const create of creates) {
      expect(create.status).toBe(201);
      expect(create.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('searches with q', async () => {
    await page.getByLabel(/^Search/).fill('milk');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.locator('#status').filter({ hasText: 'matching “milk”' }).waitFor();
    expect(await titlesShown()).toEqual([titles.milk]);
    expect(apiRequests.at(-1)).toMatchObject({ method: 'GET', path: '/api/v1/tasks', status: 200 });

    await page.getByLabel(/^Search/).fill('');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await item(titles.call).waitFor();
    expect(await titlesShown()).toEqual([titles.call, titles.passport]);
  });

  it('lets the page read the headers the API exposes (Link, ETag, RateLimit, X-Request-Id)', async () => {
    const { access_token } = JSON.parse((await stored())!) as { access_token: string };
    const taskId = await item(titles.passport).getAttribute('data-id');
    const read = await page.evaluate(
      async ({ api, token, id }) => {
        const headers = { Authorization: `Bearer ${token}` };
        const list = await fetch(`${api}/api/v1/tasks?limit=2`, { headers });
        const task = await fetch(`${api}/api/v1/tasks/${id}`, { headers });
        const pick = (res: Response, names: string[]) =>
          Object.fromEntries(names.map((name) => [name, res.headers.get(name)]));
        return {
          list: pick(list, ['link', 'ratelimit', 'ratelimit-policy', 'x-request-id']),
          task: pick(task, ['etag', 'x-request-id']),
        };
      },
      { api: server.url, token: access_token, id: taskId! },
    );
    expect(read.list).toEqual({
      link: expect.stringContaining('rel="next"'),
      ratelimit: expect.any(String),
      'ratelimit-policy': expect.any(String),
      'x-request-id': expect.any(String),
    });
    expect(read.task).toEqual({ etag: '"1"', 'x-request-id': expect.any(String) });
  });

  it('completes a task with If-Match, and shows it done', async () => {
    await item(titles.passport)
      .getByRole('button', { name: `Complete “${titles.passport}”` })
      .click();
    await item(titles.passport)
      .getByRole('button', { name: `Reopen “${titles.passport}”` })
      .waitFor();
    expect(await item(titles.passport).getAttribute('class')).toBe('done');
    await expect(item(titles.passport).locator('.meta').textContent()).resolves.toMatch(/, done$/);
    expect(apiRequests.filter((r) => r.method === 'PATCH')).toEqual([
      expect.objectContaining({ ifMatch: '"1"', status: 200 }),
    ]);
    // The API agrees.
    const { access_token } = JSON.parse((await stored())!) as { access_token: string };
    const { data: tasks } = await server
      .client(access_token)
      .GET('/api/v1/tasks', { params: { query: { status: 'completed' } } });
    expect(tasks!.items.map((t) => t.title)).toEqual([titles.passport]);
  });

  it('shows the API’s 422 for an empty and a too-long title next to the title field', async () => {
    const title = page.getByLabel('Title', { exact: true });
    await addTask('');
    await page.locator('#title-error').filter({ hasText: 'Must NOT have fewer than 1 characters.' }).waitFor();
    expect(await title.getAttribute('aria-invalid')).toBe('true');
    expect(await title.getAttribute('aria-describedby')).toBe('title-error');
    expect(await page.locator('#title-error').getAttribute('aria-live')).toBe('polite');
    expect(await page.evaluate('document.activeElement.id')).toBe('title');

    await addTask('x'.repeat(201));
    await page.locator('#title-error').filter({ hasText: 'Must NOT have more than 200 characters.' }).waitFor();
    expect(await title.getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#new-task-form-error').textContent()).toBe('');
    expect(apiRequests.filter((r) => r.status === 422).map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /api/v1/auth/register',
      'POST /api/v1/tasks',
      'POST /api/v1/tasks',
    ]);
    expect(await titlesShown()).toEqual([titles.call, titles.passport]); // nothing was created
  });

  it('deletes a task with If-Match', async () => {
    await item(titles.call)
      .getByRole('button', { name: `Delete “${titles.call}”` })
      .click();
    await item(titles.call).waitFor({ state: 'detached' });
    await item(titles.milk).waitFor(); // the page filled up from the next one
    expect(await titlesShown()).toEqual([titles.passport, titles.milk]);
    expect(apiRequests.filter((r) => r.method === 'DELETE')).toEqual([
      expect.objectContaining({ ifMatch: '"1"', status: 204 }),
    ]);
  });

  it('logs out: the session leaves localStorage, the list is hidden, the refresh token is revoked', async () => {
    const { refresh_token } = JSON.parse((await stored())!) as { refresh_token: string };
    // A second tab, sharing localStorage: logged in too, and logged out with the first.
    const tab = await openPage(context, false);
    await tab.goto(page.url(), { waitUntil: 'load' });
    await tab.locator('#whoami').filter({ hasText: email }).waitFor();
    const streamEnded = page.waitForEvent('requestfailed', (request) => isStream(request));
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#auth').waitFor({ state: 'visible' });
    // Unsubscribed: the open stream was aborted (and no other request came after the logout).
    expect((await streamEnded).failure()?.errorText).toBe('net::ERR_ABORTED');
    expect(await stored()).toBeNull();
    expect(await page.locator('#tasks').isHidden()).toBe(true);
    expect(await items().count()).toBe(0);
    expect(await page.locator('#status').textContent()).toBe('Logged out.');
    expect(apiRequests.at(-1)).toMatchObject({ method: 'POST', path: '/api/v1/auth/logout', status: 204 });
    await tab.locator('#status').filter({ hasText: 'Logged out in another tab.' }).waitFor();
    expect(await tab.locator('#tasks').isHidden()).toBe(true);
    await tab.close();
    const refreshed = await server.client().POST('/api/v1/auth/refresh', { body: { refresh_token } });
    expect(refreshed.response.status).toBe(401);

    await page.reload({ waitUntil: 'load' });
    await page.locator('#auth').waitFor({ state: 'visible' });
  });

  it('made no failed request, logged no CORS or other error, and loaded nothing from outside this machine', () => {
    expect(offMachine).toEqual([]);
    // Only the two change streams the page itself ended: at the reload, and at the logout.
    expect(failedRequests).toEqual(Array(2).fill(`GET ${server.url}/api/v1/changes/stream: net::ERR_ABORTED`));
    expect(pageErrors).toEqual([]);
    // Chromium logs each error status it gets; the three 422s above are the only ones.
    expect(consoleErrors).toEqual(
      Array(3).fill('Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)'),
    );
    expect(apiRequests.every((r) => r.status !== undefined && r.status < 500)).toBe(true);
  });

  it('an origin the API does not list cannot call it: the page says so instead of logging in', async () => {
    // The same page from http://localhost:<port>: another origin than http://127.0.0.1:<port>.
    const other = await openPage(await browser.newContext(), false);
    const blocked: string[] = [];
    other.on('console', (message) => blocked.push(message.text()));
    await other.goto(`${origin.replace('127.0.0.1', 'localhost')}/?api=${encodeURIComponent(server.url)}`, {
      waitUntil: 'load',
    });
    await other.getByLabel('Email').fill(email);
    await other.getByLabel('Password').fill(password);
    await other.getByRole('button', { name: 'Log in' }).click();
    await other
      .locator('#auth-form-error')
      .filter({ hasText: `Cannot reach the API at ${server.url}. Is it running, with CORS_ORIGINS=http://localhost:` })
      .waitFor();
    expect(blocked.join('\n')).toMatch(/blocked by CORS policy/);
    await other.context().close();
  });

  it('a link pointing ?api= off this machine cannot make the page send a password there (its CSP)', async () => {
    const other = await openPage(await browser.newContext(), false);
    const messages: string[] = [];
    other.on('console', (message) => messages.push(message.text()));
    await other.goto(`${origin}/?api=${encodeURIComponent('https://api.example.com')}`, { waitUntil: 'load' });
    await other.getByLabel('Email').fill(email);
    await other.getByLabel('Password').fill(password);
    await other.getByRole('button', { name: 'Log in' }).click();
    await other
      .locator('#auth-form-error')
      .filter({ hasText: 'Cannot reach the API at https://api.example.com.' })
      .waitFor();
    expect(messages.join('\n')).toMatch(/violates the following Content Security Policy directive: "connect-src/);
    expect(offMachine).toEqual([]); // refused before any request was made
    await other.context().close();
  });
});

/**
 * The page live: two pages of one user (two browser contexts, each logged in), changes made in
 * one shown in the other, a change made by another client shown in both, and the API restarted
 * under them. The API here is the real entry point in a process of its own (src/main.ts, as
 * `npm start` runs it, on an embedded PGlite in a directory), so that it can be stopped with
 * SIGTERM and started again on the same port and the same data.
 */
describe('examples/web live: two pages of one user, another client, and an API restart', () => {
  /** How soon a change must show in a page that did not make it. */
  const SECOND = 1000;
  const user = { email: `grace-${randomUUID()}@example.com`, password };
  const t = {
    fromA: `Water the plants ${suffix}`,
    fromApi: `Pay the rent ${suffix}`,
    whileAway: `Made while the pages were away ${suffix}`,
    afterRestart: `Made after the restart ${suffix}`,
  };
  let dataDir: string;
  let env: Record<string, string>;
  let api: Awaited<ReturnType<typeof startMain>>;
  let a: Page;
  let b: Page;
  /** Another client of the same user: the package's client in this process, logged in on its own. */
  let other: TasksClient;
  /** Where each page keeps its position in the feed (localStorage, per API and user). */
  let changeKey: string;
  const errors: string[] = [];
  const consoleMessages: string[] = [];
  /** The API requests of each page: path, and the Last-Event-ID a stream request resumed from. */
  const requests = new Map<Page, { path: string; lastEventId?: string }[]>();
  /** While set, the pages' requests for the change stream wait for it: "not reconnected yet". */
  let hold: Promise<void> | undefined;

  async function livePage(): Promise<Page> {
    const opened = await openPage(await browser.newContext(), false);
    opened.setDefaultTimeout(10_000);
    opened.on('pageerror', (error) => errors.push(String(error)));
    opened.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') consoleMessages.push(message.text());
    });
    const log: { path: string; lastEventId?: string }[] = [];
    requests.set(opened, log);
    opened.on('request', (request) => {
      if (request.url().startsWith(api.url))
        log.push({ path: new URL(request.url()).pathname, lastEventId: request.headers()['last-event-id'] });
    });
    await opened.route(
      (url) => url.pathname === '/api/v1/changes/stream',
      async (route) => {
        await hold;
        await route.fallback();
      },
    );
    await opened.goto(`${origin}/?api=${encodeURIComponent(api.url)}`, { waitUntil: 'load' });
    return opened;
  }

  /** Starts `action`'s request in `p` and resolves once the API answered it with `status`. */
  async function answered(p: Page, method: string, status: number, action: () => Promise<void>): Promise<void> {
    const response = p.waitForResponse((r) => r.url().startsWith(api.url) && r.request().method() === method);
    await action();
    expect((await response).status()).toBe(status);
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'web-example-live-'));
    env = {
      PGLITE_DIR: dataDir,
      AUTH_BUILTIN: 'true',
      KEY_ENCRYPTION_SECRET: randomBytes(32).toString('base64url'),
      JWT_SECRET: '',
      JWT_JWKS_URL: '',
      DATABASE_URL: '',
      CORS_ORIGINS: origin,
      WEBHOOK_WORKER: 'off',
      SHUTDOWN_DRAIN_MS: '0',
      // The server's advice on reconnecting after it ended a stream (1000 by default).
      STREAM_RETRY_MS: '100',
    };
    api = await startMain(env);
    [a, b] = await Promise.all([livePage(), livePage()]);
  }, 90_000);

  afterAll(async () => {
    if (api?.child.exitCode === null) {
      api.child.kill('SIGTERM');
      await api.exited;
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('both pages log in as the same user and go live, each with its own position in the feed', async () => {
    await a.getByLabel('Email').fill(user.email);
    await a.getByLabel('Password').fill(user.password);
    await a.getByRole('button', { name: 'Create account' }).click();
    await liveIn(a, 'Live').waitFor();
    await b.getByLabel('Email').fill(user.email);
    await b.getByLabel('Password').fill(user.password);
    await b.getByRole('button', { name: 'Log in' }).click();
    await liveIn(b, 'Live').waitFor();

    const login = await fetch(`${api.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(user),
    });
    expect(login.status).toBe(200);
    const { access_token } = (await login.json()) as { access_token: string };
    other = createTasksClient({ baseUrl: api.url, token: access_token });
    const { data: me } = await other.GET('/api/v1/me');
    changeKey = `tasks-api.changes ${api.url} ${me!.sub}`;
    for (const p of [a, b]) expect(await storedIn(p.context(), changeKey)).toMatch(/^[\w-]+$/);
  });

  it('a task created in A shows in B; completed in A, it shows done in B; deleted in B, it leaves A', async () => {
    await a.getByLabel('Title', { exact: true }).fill(t.fromA);
    await answered(a, 'POST', 201, () => a.getByRole('button', { name: 'Add task' }).click());
    await itemIn(b, t.fromA).waitFor({ timeout: SECOND });
    await itemIn(a, t.fromA).waitFor();

    await answered(a, 'PATCH', 200, () =>
      itemIn(a, t.fromA)
        .getByRole('button', { name: `Complete “${t.fromA}”` })
        .click(),
    );
    await itemIn(b, t.fromA)
      .getByRole('button', { name: `Reopen “${t.fromA}”` })
      .waitFor({ timeout: SECOND });
    expect(await itemIn(b, t.fromA).getAttribute('class')).toBe('done');

    // B deletes with the version the stream gave it (If-Match: "2"), not a stale one.
    const deleted = b.waitForRequest((r) => r.method() === 'DELETE');
    await answered(b, 'DELETE', 204, () =>
      itemIn(b, t.fromA)
        .getByRole('button', { name: `Delete “${t.fromA}”` })
        .click(),
    );
    expect((await deleted).headers()['if-match']).toBe('"2"');
    await itemIn(a, t.fromA).waitFor({ state: 'detached', timeout: SECOND });
    await listed(b, []);
  });

  it('a change made by another client of the same user shows in both pages', async () => {
    const { data: task, response } = await other.POST('/api/v1/tasks', { body: { title: t.fromApi } });
    expect(response.status).toBe(201);
    await Promise.all([a, b].map((p) => itemIn(p, t.fromApi).waitFor({ timeout: SECOND })));

    const patched = await other.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: task!.id }, header: { 'If-Match': '"1"' } },
      body: { completed: true },
    });
    expect(patched.response.status).toBe(200);
    await Promise.all(
      [a, b].map((p) =>
        itemIn(p, t.fromApi)
          .getByRole('button', { name: `Reopen “${t.fromApi}”` })
          .waitFor({ timeout: SECOND }),
      ),
    );
  });

  it('the API restarts (SIGTERM, same port, same data): both pages reconnect by themselves and lose nothing', async () => {
    const port = new URL(api.url).port;
    const before = new Map([a, b].map((p) => [p, requests.get(p)!.length]));
    const positions = new Map(
      await Promise.all([a, b].map(async (p) => [p, await storedIn(p.context(), changeKey)] as const)),
    );
    api.child.kill('SIGTERM');
    expect(await api.exited).toBe(0);
    // The server ended their streams cleanly: both pages say so, and keep trying.
    await Promise.all([a, b].map((p) => liveIn(p, 'Reconnecting…').waitFor({ timeout: 5000 })));

    // Until the change below is made, their attempts wait: whatever they get, they get by resuming.
    let release!: () => void;
    hold = new Promise((resolve) => (release = resolve));
    try {
      api = await startMain({ ...env, PORT: port });
      expect(api.url).toBe(`http://127.0.0.1:${port}`);
      // The other client's token is still good: same signing keys, same database.
      const created = await other.POST('/api/v1/tasks', { body: { title: t.whileAway } });
      expect(created.response.status).toBe(201);
      for (const p of [a, b]) {
        expect(await p.locator('#live').textContent()).not.toBe('Live');
        expect(await titlesIn(p)).not.toContain(t.whileAway);
      }
    } finally {
      release();
      hold = undefined;
    }
    // Back on their own (within their backoff), from where each was: the change made meanwhile comes.
    await Promise.all([a, b].map((p) => liveIn(p, 'Live').waitFor({ timeout: 15_000 })));
    await Promise.all([a, b].map((p) => itemIn(p, t.whileAway).waitFor({ timeout: SECOND })));
    for (const p of [a, b]) {
      // Every attempt resumed from where the page was (no resync, no re-read of the list).
      const since = requests.get(p)!.slice(before.get(p));
      expect(since.length).toBeGreaterThan(0);
      expect(since).toEqual(since.map(() => ({ path: '/api/v1/changes/stream', lastEventId: positions.get(p) })));
    }

    // And live again: a change in A shows in B, one from the other client in both.
    await a.getByLabel('Title', { exact: true }).fill(t.afterRestart);
    await answered(a, 'POST', 201, () => a.getByRole('button', { name: 'Add task' }).click());
    await itemIn(b, t.afterRestart).waitFor({ timeout: SECOND });
    const { data: list } = await other.GET('/api/v1/tasks', { params: { query: { q: t.fromApi } } });
    const removed = await other.DELETE('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: list!.items[0]!.id }, header: { 'If-Match': '"2"' } },
    });
    expect(removed.response.status).toBe(204);
    await Promise.all([a, b].map((p) => itemIn(p, t.fromApi).waitFor({ state: 'detached', timeout: SECOND })));

    // Nothing lost, nothing twice: both pages show what the API has.
    const { data: all } = await other.GET('/api/v1/tasks');
    expect(all!.items.map((task) => task.title)).toEqual([t.afterRestart, t.whileAway]);
    await Promise.all([a, b].map((p) => listed(p, [t.afterRestart, t.whileAway])));
  }, 90_000);

  it('logging out unsubscribes (the stream is aborted, and not opened again); neither page threw', async () => {
    const streams: string[] = [];
    a.on('request', (request) => {
      if (isStream(request)) streams.push(request.url());
    });
    const streamEnded = a.waitForEvent('requestfailed', (request) => isStream(request));
    await a.getByRole('button', { name: 'Log out' }).click();
    await a.locator('#auth').waitFor({ state: 'visible' });
    expect((await streamEnded).failure()?.errorText).toBe('net::ERR_ABORTED');

    // B is still live; A, logged out, asks for nothing more.
    const title = `After A logged out ${suffix}`;
    expect((await other.POST('/api/v1/tasks', { body: { title } })).response.status).toBe(201);
    await itemIn(b, title).waitFor({ timeout: SECOND });
    expect(streams).toEqual([]);
    expect(errors).toEqual([]);
    // What Chromium logs is the stream's attempts while the API was down, refused.
    expect(consoleMessages.filter((m) => m !== 'Failed to load resource: net::ERR_CONNECTION_REFUSED')).toEqual([]);
  });
});
