import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Express } from 'express';
import { loadContract } from '../../src/http/contract.js';
import { METHODS } from '../../src/http/openapi.js';
import { startServer, type TestServer } from '../helpers/server.js';

interface RouterLayer {
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: RouterLayer[] };
  slash: boolean;
  rawPath?: string;
}

/** Every `METHOD /path` the app routes, found by walking its router stack (sub-routers included). */
function servedRoutes(app: Express): string[] {
  const walk = (stack: RouterLayer[], prefix: string): string[] =>
    stack.flatMap((layer) => {
      if (layer.route) {
        return Object.keys(layer.route.methods).map(
          (method) => `${method.toUpperCase()} ${prefix}${layer.route!.path}`,
        );
      }
      return layer.handle.stack ? walk(layer.handle.stack, layer.slash ? prefix : `${prefix}${layer.rawPath}`) : [];
    });
  return walk((app as unknown as { router: { stack: RouterLayer[] } }).router.stack, '').sort();
}

/** Every `METHOD /path` the contract declares, with `{param}` written the Express way. */
function declaredRoutes(): string[] {
  return Object.entries(loadContract().spec.paths)
    .flatMap(([path, item]) =>
      Object.keys(item)
        .filter((key) => (METHODS as readonly string[]).includes(key))
        .map((method) => `${method.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ':$1')}`),
    )
    .sort();
}

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

describe('the routes the app serves are exactly the operations of the contract', () => {
  it('no undocumented route, no unimplemented operation', () => {
    const served = servedRoutes(server.app);
    const declared = declaredRoutes();
    expect(served.length).toBeGreaterThan(0);
    expect({
      undocumented: served.filter((r) => !declared.includes(r)),
      unimplemented: declared.filter((r) => !served.includes(r)),
    }).toEqual({ undocumented: [], unimplemented: [] });
  });

  it('each served route answers over HTTP as an operation, not as "no such route"', async () => {
    const token = await server.tokenFor();
    for (const route of servedRoutes(server.app)) {
      const [method, path] = route.split(' ') as [string, string];
      const url = server.url + path.replace(':taskId', '0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11');
      const res = await fetch(url, { method, headers: { Authorization: `Bearer ${token}` } });
      const problemType = res.headers.get('content-type')?.startsWith('application/problem+json')
        ? ((await res.json()) as { type: string }).type
        : undefined;
      expect({ route, problemType }).not.toEqual({
        route,
        problemType: expect.stringMatching(/:(not-found|method-not-allowed)$/),
      });
    }
  });

  it("routes only the contract's spelling of a path: any other case is 404 problem+json", async () => {
    const token = await server.tokenFor();
    for (const path of ['/API/V1/TASKS', '/api/v1/Tasks', '/Health/Live', '/OPENAPI.JSON']) {
      const res = await fetch(`${server.url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({
        type: 'urn:tasks-api:problem:not-found',
        detail: `No route GET ${path}.`,
      });
    }
  });

  it('keeps detail and instance within the lengths the contract declares for a very long path', async () => {
    const path = `/nothing/${'x'.repeat(6000)}`;
    const res = await fetch(`${server.url}${path}`);
    expect(res.status).toBe(404);
    const problem = (await res.json()) as { detail: string; instance: string };
    expect(problem.detail.length).toBeLessThanOrEqual(2000);
    expect(problem.instance.length).toBeLessThanOrEqual(2048);
    expect(problem.instance.startsWith('/nothing/xxx')).toBe(true);
  });
});
