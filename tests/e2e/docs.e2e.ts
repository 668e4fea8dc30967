import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium, type Browser, type Page } from 'playwright-core';
import { loadContract, operationIdsOf, type OpenApiDocument } from '../../src/http/contract.js';
import { startServer, type TestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';

/** Every operation's summary, grouped by its first tag, in the order the spec lists them. */
function summariesByTag(spec: OpenApiDocument): Map<string, string[]> {
  const byTag = new Map<string, string[]>();
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item) as { summary?: string; tags?: string[] }[]) {
      if (!operation?.summary) continue;
      const tag = operation.tags?.[0] ?? '';
      byTag.set(tag, [...(byTag.get(tag) ?? []), operation.summary]);
    }
  }
  return byTag;
}

/** The h1/h2 whose whole text is `text` (Redoc's headings also hold an icon-only anchor link). */
const heading = (level: 1 | 2, text: string) =>
  page.locator(`h${level}`).filter({ hasText: new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`) });

let server: TestServer;
let browser: Browser;
let page: Page;
const offMachine: string[] = [];
const pageErrors: string[] = [];
/** Every URL the page asked for, data: URLs aside (inline, no request leaves the page). */
const requested: string[] = [];
/** What Chromium refused under the page's Content-Security-Policy (a request the page tried). */
const cspViolations: string[] = [];
let docsEncoding: string | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  page = await browser.newPage();
  // The network is off except for this machine: anything else is recorded and refused.
  await page.route('**/*', (route) => {
    const { hostname, href } = new URL(route.request().url());
    if (hostname === '127.0.0.1' || hostname === 'localhost') return route.continue();
    offMachine.push(href);
    return route.abort('internetdisconnected');
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('request', (request) => {
    if (!request.url().startsWith('data:')) requested.push(request.url());
  });
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  const response = await page.goto(`${server.url}/docs`, { waitUntil: 'load' });
  docsEncoding = (await response?.allHeaders())?.['content-encoding'];
  // Redoc renders (and would report, or fetch images) after load: give it a moment.
  await page.waitForLoadState('networkidle');
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('GET /docs in headless Chromium, network off', () => {
  it('renders the title and the guide sections of info.description', async () => {
    await heading(1, 'Tasks API (1.0.0)').waitFor();
    for (const section of ['Quick start', 'Authentication', 'Errors', 'Webhooks']) await heading(2, section).waitFor();
  });

  it("renders every operation's summary as the heading of its section", async () => {
    const { spec } = loadContract();
    const byTag = summariesByTag(spec);
    expect([...byTag.values()].flat()).toHaveLength(operationIdsOf(spec).length);
    const menu = page.locator('[data-component-name="Menu/MenuItem"]');
    for (const [tag, summaries] of byTag) {
      await menu.getByText(tag, { exact: true }).click();
      for (const summary of summaries) {
        await menu.getByText(summary, { exact: true }).click();
        await heading(2, summary).waitFor({ state: 'visible' });
      }
    }
  });

  it('renders every webhook event the API sends (the contract’s webhooks:), with its payload', async () => {
    const { spec } = loadContract();
    const events = Object.values(
      (spec as { webhooks?: Record<string, { post: { summary: string } }> }).webhooks ?? {},
    ).map((item) => item.post.summary);
    expect(events).toHaveLength(6);
    const menu = page.locator('[data-component-name="Menu/MenuItem"]');
    await menu.getByText('Webhook events', { exact: true }).click();
    for (const summary of events) {
      await menu.getByText(summary, { exact: true }).click();
      // Redoc marks an event's heading with a "Webhook" badge after its summary.
      await page
        .locator('h2')
        .filter({ hasText: new RegExp(`^\\s*${summary}\\s*Webhook\\s*$`) })
        .waitFor({ state: 'visible' });
    }
  });

  it('loads nothing from outside this machine and throws no script error', () => {
    expect(offMachine).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('asks for nothing but the page itself: no other origin, no favicon, no telemetry, nothing the CSP had to refuse', () => {
    expect(requested).toEqual([`${server.url}/docs`]);
    expect(cspViolations).toEqual([]);
  });

  it('is fetched compressed (the browser accepts brotli)', () => {
    expect(docsEncoding).toBe('br');
  });
});
