import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
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
const item = (title: string) => items().filter({ has: page.locator('.title', { hasText: title }) });
const titlesShown = async () => page.locator('#task-list li .title').allTextContents();
/** The session the page keeps in localStorage, or null. */
async function stored(): Promise<string | null> {
  const { origins } = await context.storageState();
  return (
    origins.find((o) => o.origin === origin)?.localStorage.find((entry) => entry.name === storageKey())?.value ?? null
  );
}

async function addTask(title: string, fields: { priority?: string; due?: string } = {}): Promise<void> {
  await page.getByLabel('Title', { exact: true }).fill(title);
  if (fields.priority) await page.getByLabel('Priority').selectOption(fields.priority);
  if (fields.due) await page.getByLabel(/Due date/).fill(fields.due);
  await page.getByRole('button', { name: 'Add task' }).click();
}

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

    await page.reload({ waitUntil: 'load' });
    await page.locator('#whoami').filter({ hasText: email }).waitFor();
    expect(await page.locator('#auth').isHidden()).toBe(true);
  });

  it('creates tasks (with an Idempotency-Key) and lists them newest first, a page at a time', async () => {
    await addTask(titles.milk);
    await item(titles.milk).waitFor();
    await addTask(titles.passport, { priority: 'high', due: '2030-12-01' });
    await item(titles.passport).waitFor();
    await addTask(titles.call, { priority: 'low' });
    await item(titles.call).waitFor();
    expect(await page.getByLabel('Title', { exact: true }).inputValue()).toBe(''); // the form was reset

    // Two to a page: the newest two, then the first one on the next page.
    expect(await titlesShown()).toEqual([titles.call, titles.passport]);
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
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#auth').waitFor({ state: 'visible' });
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
    expect(failedRequests).toEqual([]);
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
