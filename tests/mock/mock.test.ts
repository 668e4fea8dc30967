// `npm run mock` (scripts/mock.mjs: Stoplight Prism on generated/openapi.json) is useful to a
// frontend, not just up: the typed client's scenario (list, create, get, update with If-Match,
// delete, problems picked with `Prefer`) runs against it, and every response it gets, body and
// documented headers, validates against the contract's schema for that operation and status
// (ajv 2020 with full formats, as scripts/check-examples.mjs). Off-spec requests are refused with
// the contract's 422 problem, the real violations in `sl-violations`; a browser on another origin
// may call it (CORS). What the mock does not do (keep state, refuse unknown query parameters) is
// pinned too, so docs/mock.md cannot go stale.
//
// The script runs as `npm run mock` would, with MOCK_PORT=0 (a free port, named in its start-up
// line), in its own process group, stopped by SIGTERM at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import {
  createTasksClient,
  ifMatch,
  ProblemError,
  unwrap,
  type Problem,
  type TasksClient,
} from '../../packages/client/src/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const START_TIMEOUT_MS = 20_000;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an OpenAPI node, walked by whatever keys the contract has
type Node = Record<string, any>;
const spec = JSON.parse(readFileSync(join(root, 'generated', 'openapi.json'), 'utf8')) as Node;
const paths = spec.paths as Record<string, Record<string, Node | undefined>>;

// ---------------------------------------------------------------------------------------------
// The contract's response for (method, path, status), and ajv over the whole document.

const escape = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');
/** The node a `$ref` names (however many deep), with its JSON pointer. */
function resolve(node: Node, pointer: string): { node: Node; pointer: string } {
  let current = node;
  let at = pointer;
  while (current && typeof current.$ref === 'string') {
    at = current.$ref;
    current = at
      .slice(2)
      .split('/')
      .reduce((n: Node, key) => n[key.replace(/~1/g, '/').replace(/~0/g, '~')] as Node, spec);
  }
  return { node: current, pointer: at };
}
const templates = Object.keys(paths).map((template) => ({
  template,
  regex: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`),
}));

// ajv-formats is CommonJS: its function is the default export's default under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv2020,
  options: { mode: 'full' },
) => void;
const ajv = new Ajv2020({ strict: false, allErrors: true, unicodeRegExp: true, validateFormats: true });
addFormats(ajv, { mode: 'full' });
// Formats OpenAPI names that JSON Schema does not define; they constrain nothing.
for (const format of ['password', 'binary', 'byte', 'int32', 'int64', 'float', 'double'])
  if (!ajv.formats[format]) ajv.addFormat(format, true);
ajv.addSchema({ ...spec, $id: 'openapi' });
const validators = new Map<string, ReturnType<Ajv2020['compile']>>();
/** Why `value` does not match the schema at `pointer`, or undefined when it does. */
function mismatch(value: unknown, pointer: string): string | undefined {
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: `openapi${pointer}` }));
  const validate = validators.get(pointer)!;
  return validate(value) ? undefined : ajv.errorsText(validate.errors);
}

/** A response checked against the contract: what it is, and every way it disagrees. */
interface Checked {
  method: string;
  path: string;
  status: number;
  problems: string[];
}

/** Checks one response: its status is documented, its body and documented headers match their schemas. */
async function checkResponse(method: string, url: URL, response: Response): Promise<Checked> {
  const checked: Checked = { method, path: url.pathname, status: response.status, problems: [] };
  const match = templates.find((t) => t.regex.test(url.pathname));
  const operationPointer = match && `#/paths/${escape(match.template)}/${method.toLowerCase()}`;
  const operation = match && paths[match.template]![method.toLowerCase()];
  if (!operationPointer || !operation) {
    checked.problems.push('no such operation in the contract');
    return checked;
  }
  const declared = (operation.responses as Record<string, Node> | undefined)?.[String(response.status)];
  if (declared === undefined) {
    checked.problems.push(`status ${response.status} is not documented for this operation`);
    return checked;
  }
  const { node: documented, pointer } = resolve(declared, `${operationPointer}/responses/${response.status}`);

  for (const [name, header] of Object.entries((documented.headers ?? {}) as Node)) {
    const { node: definition, pointer: at } = resolve(header as Node, `${pointer}/headers/${escape(name)}`);
    const value = response.headers.get(name);
    if (value === null) {
      if (definition.required === true) checked.problems.push(`required header ${name} is missing`);
      continue;
    }
    // A header is text: an integer one (Retry-After) is checked as the number it spells.
    const schema = resolve(definition.schema as Node, `${at}/schema`).node;
    const typed = schema.type === 'integer' && /^-?[0-9]+$/.test(value) ? Number(value) : value;
    const why = mismatch(typed, `${at}/schema`);
    if (why) checked.problems.push(`header ${name}: ${JSON.stringify(value)}: ${why}`);
  }

  const body = await response.clone().text();
  const content = (documented.content ?? {}) as Node;
  if (Object.keys(content).length === 0) {
    if (body !== '') checked.problems.push(`a body where the contract documents none: ${body.slice(0, 100)}`);
    return checked;
  }
  const type = response.headers.get('Content-Type')?.split(';')[0]!.trim().toLowerCase() ?? '';
  if (!(type in content)) {
    checked.problems.push(`media type ${type} is not one of ${Object.keys(content).join(', ')}`);
    return checked;
  }
  const why = mismatch(JSON.parse(body) as unknown, `${pointer}/content/${escape(type)}/schema`);
  if (why) checked.problems.push(`body: ${why}`);
  return checked;
}

// ---------------------------------------------------------------------------------------------
// The mock, as `npm run mock` starts it.

let mock: ChildProcess;
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
let output = '';
let base: string;

beforeAll(async () => {
  mock = spawn(process.execPath, [join(root, 'scripts', 'mock.mjs')], {
    cwd: root,
    env: { ...process.env, NODE_OPTIONS: '', MOCK_PORT: '0', MOCK_HOST: '127.0.0.1', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: afterAll can end Prism with it whatever happens to the script.
    detached: true,
  });
  exited = new Promise((resolve) => mock.once('exit', (code, signal) => resolve({ code, signal })));
  mock.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  mock.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + START_TIMEOUT_MS;
  let url: string | undefined;
  while ((url = /mock listening on (http:\/\/\S+)/.exec(output)?.[1]) === undefined) {
    if (Date.now() > deadline || mock.exitCode !== null)
      throw new Error(`npm run mock did not start within ${START_TIMEOUT_MS} ms:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  base = url;
}, START_TIMEOUT_MS + 5_000);

afterAll(async () => {
  if (mock?.pid === undefined) return;
  // The last test stops it; if that did not happen, the whole group goes.
  try {
    process.kill(-mock.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  await exited;
});

/** Every response the clients below got, checked against the contract as it arrived. */
const checkedResponses: Checked[] = [];
/** The global fetch, checking each response and keeping what was sent. */
function checkingFetch() {
  const sent: { method: string; url: URL; headers: Headers }[] = [];
  const fetch = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    sent.push({ method: request.method, url, headers: new Headers(request.headers) });
    const response = await globalThis.fetch(request);
    checkedResponses.push(await checkResponse(request.method, url, response));
    return response;
  };
  return { fetch, sent };
}
/** A typed client on the mock: any bearer token passes there (`null`: none). */
function client(token: string | null = 'any-token-will-do'): {
  api: TasksClient;
  sent: ReturnType<typeof checkingFetch>['sent'];
} {
  const { fetch, sent } = checkingFetch();
  return { api: createTasksClient({ baseUrl: base, token: token ?? undefined, fetch }), sent };
}
/** The checks of the responses received since `from`: each must have no problems. */
const checksSince = (from: number) => checkedResponses.slice(from).filter((c) => c.problems.length > 0);

const taskId = '0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11';

describe('the typed client scenario against npm run mock', () => {
  it('lists, creates, reads, updates with If-Match and deletes; every response matches the contract', async () => {
    const from = checkedResponses.length;
    const { api, sent } = client();

    const page = await unwrap(api.GET('/api/v1/tasks', { params: { query: { limit: 20, status: 'pending' } } }));
    expect(page.items.length).toBeGreaterThan(0);

    const created = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'Buy milk', tags: ['errands'] } }));
    // The client sent a fresh Idempotency-Key, which the mock validated as the contract says.
    expect(sent.at(-1)!.headers.get('Idempotency-Key')).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);

    const read = await unwrap(api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: created.id } } }));
    const updated = await unwrap(
      api.PATCH('/api/v1/tasks/{taskId}', {
        params: { path: { taskId: read.id }, header: ifMatch(read) },
        body: { completed: true },
      }),
    );
    // If-Match is the ETag the mock sent with the task it was read from.
    expect(sent.at(-1)!.headers.get('If-Match')).toMatch(/^"[0-9]+"$/);
    expect(updated.id).toBe(read.id);

    const deleted = await api.DELETE('/api/v1/tasks/{taskId}', {
      params: { path: { taskId: read.id }, header: ifMatch(updated) },
    });
    expect(deleted.response.status).toBe(204);

    const checks = checkedResponses.slice(from);
    expect(checks.map((c) => `${c.method} ${c.status}`)).toEqual([
      'GET 200',
      'POST 201',
      'GET 200',
      'PATCH 200',
      'DELETE 204',
    ]);
    expect(checksSince(from)).toEqual([]);
  });

  it('answers with the contract examples, not with state: a created task is not stored', async () => {
    const { api } = client();
    const creation = await api.POST('/api/v1/tasks', { body: { title: 'Mine, not the example' } });
    const created = creation.data!;
    expect(created.title).not.toBe('Mine, not the example');
    // Every documented header with an example is sent, even one the real server sends only on a replay.
    expect(creation.response.headers.get('Idempotent-Replayed')).toBe('true');
    const page = await unwrap(api.GET('/api/v1/tasks'));
    expect(page.items.map((t) => t.title)).not.toContain('Mine, not the example');
    // Paging never ends: the next page is the same example, with the same next_cursor (so
    // paginate() over the mock would loop until the caller stops it).
    expect(page.next_cursor).not.toBeNull();
    const next = await unwrap(api.GET('/api/v1/tasks', { params: { query: { cursor: page.next_cursor! } } }));
    expect(next).toEqual(page);
    // A deleted task is still there.
    await api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: created.id } } });
    const again = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: created.id } } });
    expect(again.response.status).toBe(200);
  });
});

describe('Prefer picks a documented response', () => {
  it('code=404: the contract problem as a typed ProblemError', async () => {
    const from = checkedResponses.length;
    const { api } = client();
    const failure = await unwrap(
      api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId } }, headers: { Prefer: 'code=404' } }),
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ProblemError);
    if (!(failure instanceof ProblemError)) throw failure;
    expect(failure.status).toBe(404);
    expect(failure.type).toBe('urn:tasks-api:problem:task-not-found');
    expect(failure.response.headers.get('Content-Type')).toMatch(/^application\/problem\+json/);
    expect(checksSince(from)).toEqual([]);
  });

  it('code=412 on a conditional update, code=429 with its Retry-After', async () => {
    const from = checkedResponses.length;
    const { api } = client();
    const stale = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId }, header: { 'If-Match': '"1"' } },
      body: { title: 'x' },
      headers: { Prefer: 'code=412' },
    });
    expect(stale.response.status).toBe(412);
    expect(stale.error).toMatchObject({ type: 'urn:tasks-api:problem:precondition-failed', status: 412 });
    const limited = await api.GET('/api/v1/tasks', { headers: { Prefer: 'code=429' } });
    expect(limited.response.status).toBe(429);
    expect(limited.response.headers.get('Retry-After')).toMatch(/^[0-9]+$/);
    expect(checkedResponses.slice(from)).toHaveLength(2);
    expect(checksSince(from)).toEqual([]);
  });

  it('code=…, example=<name> picks a named example of that status', async () => {
    const from = checkedResponses.length;
    const { api } = client();
    const path = {
      webhookId: '3f2a9c1d-8b4e-4f6a-9c2d-5e7f1a3b8c90',
      deliveryId: '9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d',
    };
    const url = '/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver' as const;
    const webhook = await api.POST(url, { params: { path }, headers: { Prefer: 'code=404, example=webhookNotFound' } });
    expect(webhook.error).toMatchObject({ status: 404, type: 'urn:tasks-api:problem:webhook-not-found' });
    const delivery = await api.POST(url, {
      params: { path },
      headers: { Prefer: 'code=404, example=deliveryNotFound' },
    });
    expect(delivery.error).toMatchObject({ status: 404, type: 'urn:tasks-api:problem:webhook-delivery-not-found' });
    expect(checksSince(from)).toEqual([]);
  });

  it("a status the operation does not document is Prism's own 404, not the contract's", async () => {
    const response = await fetch(`${base}/api/v1/tasks/${taskId}`, {
      headers: { Authorization: 'Bearer x', Prefer: 'code=418' },
    });
    expect(response.status).toBe(404);
    expect(((await response.json()) as Problem).type).toBe('https://stoplight.io/prism/errors#NOT_FOUND');
  });
});

describe('off-spec requests are refused', () => {
  /** The violations Prism lists in `sl-violations` (the body is the contract's fixed 422 example). */
  const violations = (response: Response) =>
    (JSON.parse(response.headers.get('sl-violations') ?? '[]') as { location: string[]; message: string }[]).map(
      (v) => `${v.location.join('.')}: ${v.message}`,
    );

  it('a body with an unknown field or a wrong type: 422 problem+json, the contract shape', async () => {
    const from = checkedResponses.length;
    const { api } = client();
    const unknown = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'x', colour: 'red' } as never })).catch(
      (error: unknown) => error,
    );
    expect(unknown).toBeInstanceOf(ProblemError);
    if (!(unknown instanceof ProblemError)) throw unknown;
    expect(unknown.status).toBe(422);
    expect(unknown.type).toBe('urn:tasks-api:problem:validation-failed');
    expect(unknown.response.headers.get('Content-Type')).toMatch(/^application\/problem\+json/);
    expect(violations(unknown.response)).toEqual([
      expect.stringMatching(/^request\.body: .*additional properties.*'colour'/),
    ]);

    const wrongType = await api.POST('/api/v1/tasks', { body: { title: 42 } as never });
    expect(wrongType.response.status).toBe(422);
    expect(violations(wrongType.response)).toEqual([expect.stringMatching(/^request\.body\.title: .*must be string/)]);
    expect(checksSince(from)).toEqual([]);
  });

  it('a query value out of range, a malformed If-Match, a task id that is no UUID: 422', async () => {
    const from = checkedResponses.length;
    const { api } = client();
    const limit = await api.GET('/api/v1/tasks', { params: { query: { limit: 1000 } } });
    expect(limit.response.status).toBe(422);
    expect(violations(limit.response)).toEqual([expect.stringMatching(/^request\.query\.limit: /)]);
    const etag = await api.PATCH('/api/v1/tasks/{taskId}', {
      params: { path: { taskId }, header: { 'If-Match': '1' } },
      body: { completed: true },
    });
    expect(etag.response.status).toBe(422);
    expect(violations(etag.response)).toEqual([expect.stringMatching(/^request\.header\.if-match: /)]);
    const id = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: 'not-a-uuid' } } });
    expect(id.response.status).toBe(422);
    expect(checksSince(from)).toEqual([]);
  });

  it('the 422 body is the contract example, whatever the violation: only sl-violations names it', async () => {
    const { api } = client();
    const { error, response } = await api.GET('/api/v1/tasks', { params: { query: { limit: 0 } } });
    expect(response.status).toBe(422);
    expect(error).toMatchObject({ errors: [{ pointer: '/title' }, { pointer: '/owner_id' }] });
    expect(violations(response)).toEqual([expect.stringMatching(/^request\.query\.limit: .*>= 1/)]);
  });

  it('no bearer token: 401 (any token passes: the mock checks only that one is there)', async () => {
    const from = checkedResponses.length;
    const { api } = client(null);
    const { error, response } = await api.GET('/api/v1/tasks');
    expect(response.status).toBe(401);
    expect(error).toMatchObject({ status: 401, type: 'urn:tasks-api:problem:invalid-token' });
    expect(checksSince(from)).toEqual([]);
  });

  it('an unknown query parameter is NOT refused (the real server answers 422)', async () => {
    const response = await fetch(`${base}/api/v1/tasks?colour=red`, { headers: { Authorization: 'Bearer x' } });
    expect(response.status).toBe(200);
  });
});

describe('a browser on another origin may call it', () => {
  const origin = 'http://localhost:5173';

  it('answers the preflight of a conditional update with the origin, method and headers asked for', async () => {
    const response = await fetch(`${base}/api/v1/tasks/${taskId}`, {
      method: 'OPTIONS',
      headers: {
        Origin: origin,
        'Access-Control-Request-Method': 'PATCH',
        'Access-Control-Request-Headers': 'authorization,content-type,if-match',
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get('Access-Control-Allow-Origin')).toBe(origin);
    expect(response.headers.get('Access-Control-Allow-Methods')).toBe('PATCH');
    expect(response.headers.get('Access-Control-Allow-Headers')).toBe('authorization,content-type,if-match');
  });

  it("allows the caller's origin on 2xx and problem responses, and exposes every header (ETag, Link, sl-violations)", async () => {
    for (const [path, prefer] of [
      ['/api/v1/tasks', undefined],
      [`/api/v1/tasks/${taskId}`, undefined],
      [`/api/v1/tasks/${taskId}`, 'code=404'],
    ] as const) {
      const response = await fetch(`${base}${path}`, {
        headers: { Origin: origin, Authorization: 'Bearer x', ...(prefer ? { Prefer: prefer } : {}) },
      });
      // Not the contract's example origin (https://app.example.com): scripts/mock.mjs serves the
      // contract without the documented Access-Control-* headers, so Prism's own apply.
      expect(response.headers.get('Access-Control-Allow-Origin')).toBe(origin);
      expect(response.headers.get('Access-Control-Expose-Headers')).toBe('*');
    }
  });
});

describe('stopping', () => {
  it('every response above was checked against the contract', () => {
    expect(checkedResponses.length).toBeGreaterThanOrEqual(20);
    expect(checkedResponses.filter((c) => c.problems.length > 0)).toEqual([]);
  });

  it('SIGTERM stops the script and Prism with it', async () => {
    mock.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    // Nothing is left in its process group (Prism was in it): signal 0 finds no one.
    expect(() => process.kill(-mock.pid!, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    await expect(fetch(`${base}/health/live`)).rejects.toThrow();
  });
});
