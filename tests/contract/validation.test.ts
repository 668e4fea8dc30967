import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { buildTask } from '../helpers/factories.js';
import { png } from '../helpers/files.js';
import { startServer, type TestServer } from '../helpers/server.js';

/** What a blank title is told: TaskTitle.yaml's x-pattern-description, never its regular expression. */
const NON_BLANK_TEXT =
  'must be text that is not empty or only whitespace, without NUL (\\u0000) characters or unpaired UTF-16 surrogates';

let server: TestServer;
let token: string;
let taskId: string;
beforeAll(async () => {
  server = await startServer();
  token = await server.tokenFor();
  const { data } = await server.client(token).POST('/api/v1/tasks', { body: buildTask() });
  taskId = data!.id;
});
afterAll(() => server.close());

/** A raw request, for what the typed client would refuse to send. */
function send(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) {
  return fetch(`${server.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...headers,
    },
    body,
  });
}

async function expectProblem(res: Response, status: number, type: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const problem = (await res.json()) as Record<string, unknown>;
  expect(problem).toMatchObject({ type: `urn:tasks-api:problem:${type}`, status });
  expect(typeof problem.title).toBe('string');
  expect(typeof problem.detail).toBe('string');
  expect(problem.request_id).toBe(res.headers.get('x-request-id'));
  return problem;
}

describe('422 for each constraint of the task schema', () => {
  const longTags = Array.from({ length: 21 }, (_, i) => `t${i}`);
  it.each([
    ['a whitespace-only title', { title: '   ' }, '/title', NON_BLANK_TEXT],
    [
      'a title longer than 200 characters',
      { title: 'x'.repeat(201) },
      '/title',
      'must NOT have more than 200 characters',
    ],
    ['a title that is not a string', { title: 42 }, '/title', 'must be string'],
    [
      'a description longer than 1000 characters',
      { description: 'd'.repeat(1001) },
      '/description',
      'must NOT have more than 1000 characters',
    ],
    [
      'an unknown priority',
      { priority: 'urgent' },
      '/priority',
      'must be equal to one of the allowed values: low, medium, high',
    ],
    ['more than 20 tags', { tags: longTags }, '/tags', 'must NOT have more than 20 items'],
    // Ajv's linear uniqueItems check (a hash of the strings) names the later item first.
    ['duplicate tags', { tags: ['a', 'a'] }, '/tags', 'must NOT have duplicate items (items ## 1 and 0 are identical)'],
    ['a tag longer than 32 characters', { tags: ['t'.repeat(33)] }, '/tags/0', 'must NOT have more than 32 characters'],
    [
      'a due_at that is not a date-time',
      { due_at: 'next tuesday' },
      '/due_at',
      expect.stringMatching(/^must match format "date-time": RFC 3339 .*±15:59/),
    ],
    ['a completed that is not a boolean', { completed: 'yes' }, '/completed', 'must be boolean'],
  ])('rejects %s', async (_label, fields, pointer, detail) => {
    const res = await send('POST', '/api/v1/tasks', JSON.stringify({ ...buildTask(), ...fields }));
    const problem = await expectProblem(res, 422, 'validation-failed');
    expect(problem.errors).toEqual([{ in: 'body', pointer, detail }]);
  });

  it.each([
    ['owner_id', 'someone-else'],
    ['id', '0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b11'],
    ['created_at', '2020-01-01T00:00:00Z'],
    ['color', 'red'],
  ])('rejects a body with %s', async (field, value) => {
    const res = await send('POST', '/api/v1/tasks', JSON.stringify({ ...buildTask(), [field]: value }));
    const problem = await expectProblem(res, 422, 'validation-failed');
    expect(problem.errors).toEqual([
      { in: 'body', pointer: `/${field}`, detail: 'must NOT have additional properties' },
    ]);
  });

  it('rejects an empty title, saying each rule it breaks', async () => {
    const problem = await expectProblem(
      await send('POST', '/api/v1/tasks', JSON.stringify({ title: '' })),
      422,
      'validation-failed',
    );
    expect(problem.errors).toEqual([
      { in: 'body', pointer: '/title', detail: 'must NOT have fewer than 1 characters' },
      { in: 'body', pointer: '/title', detail: NON_BLANK_TEXT },
    ]);
  });

  it('rejects a body without a title, pointing at the missing field', async () => {
    const problem = await expectProblem(
      await send('POST', '/api/v1/tasks', JSON.stringify({ priority: 'low' })),
      422,
      'validation-failed',
    );
    expect(problem.errors).toEqual([{ in: 'body', pointer: '/title', detail: "must have required property 'title'" }]);
  });

  it('names every offending field, not just the first', async () => {
    const res = await send('POST', '/api/v1/tasks', JSON.stringify({ title: '', priority: 'urgent', owner_id: 'x' }));
    const problem = await expectProblem(res, 422, 'validation-failed');
    expect(new Set((problem.errors as { pointer: string }[]).map((e) => e.pointer))).toEqual(
      new Set(['/owner_id', '/priority', '/title']),
    );
  });

  it('rejects owner_id and a null title in a PATCH, and changes nothing', async () => {
    for (const body of [{ owner_id: 'someone-else' }, { title: null }]) {
      await expectProblem(
        await send('PATCH', `/api/v1/tasks/${taskId}`, JSON.stringify(body)),
        422,
        'validation-failed',
      );
    }
    const res = await send('GET', `/api/v1/tasks/${taskId}`);
    expect(((await res.json()) as { title: string }).title).toMatch(/^Task \d+$/);
  });

  it('rejects a PUT without a title', async () => {
    await expectProblem(
      await send('PUT', `/api/v1/tasks/${taskId}`, JSON.stringify({ priority: 'low' })),
      422,
      'validation-failed',
    );
  });
});

describe('422, not 500, for instants that look right but do not exist', () => {
  it.each(['2026-13-01T00:00:00Z', '2026-02-30T09:00:00Z', '2026-12-01T24:61:00Z'])('due_at %s', async (due_at) => {
    const problem = await expectProblem(
      await send('POST', '/api/v1/tasks', JSON.stringify({ ...buildTask(), due_at })),
      422,
      'validation-failed',
    );
    expect(problem.errors).toEqual([expect.objectContaining({ in: 'body', pointer: '/due_at' })]);
  });
});

describe('422 for bad parameters', () => {
  it.each([
    ['limit=0', 'query', '/limit'],
    ['limit=101', 'query', '/limit'],
    ['limit=ten', 'query', '/limit'],
    ['status=done', 'query', '/status'],
    ['sort=title&x=1', 'query', '/x'],
    ['sort=colour', 'query', '/sort'],
    ['sort=--title', 'query', '/sort'],
    ['priority=urgent', 'query', '/priority/0'],
    ['priority=low&priority=medium&priority=high&priority=low', 'query', '/priority'],
    ['tag=', 'query', '/tag'],
    [`tag=${'x'.repeat(33)}`, 'query', '/tag/0'],
    ['due_before=tomorrow', 'query', '/due_before'],
    ['due_after=2026-13-01T00:00:00Z', 'query', '/due_after'],
    ['due_before=2026-02-30T00:00:00Z', 'query', '/due_before'],
    ['q=', 'query', '/q'],
    [`q=${'x'.repeat(201)}`, 'query', '/q'],
  ])('rejects ?%s', async (query, where, pointer) => {
    const problem = await expectProblem(await send('GET', `/api/v1/tasks?${query}`), 422, 'validation-failed');
    expect(problem.errors).toEqual(expect.arrayContaining([expect.objectContaining({ in: where, pointer })]));
  });

  // Each pattern's words come from the contract (x-pattern-description, required by the Spectral
  // rule pattern-has-words); the contract fuzz checks that no 422 quotes a regular expression.
  it.each([
    [
      'an unquoted If-Match',
      'PATCH',
      { 'If-Match': '1' },
      'header',
      '/if-match',
      'must be an entity tag in double quotes, e.g. "1" (or W/"1", several separated by commas, or *)',
    ],
    [
      'an Idempotency-Key with a space',
      'POST',
      { 'Idempotency-Key': 'a b' },
      'header',
      '/idempotency-key',
      'must be visible ASCII characters without spaces, e.g. a UUID',
    ],
  ])('says what %s must be in words', async (_, method, headers, where, pointer, detail) => {
    const path = method === 'PATCH' ? `/api/v1/tasks/${taskId}` : '/api/v1/tasks';
    const problem = await expectProblem(
      await send(method, path, JSON.stringify({ title: 'x' }), headers),
      422,
      'validation-failed',
    );
    expect(problem.errors).toEqual([{ in: where, pointer, detail }]);
  });

  it('says what a cursor must be in words', async () => {
    const problem = await expectProblem(await send('GET', '/api/v1/tasks?cursor=a%20b'), 422, 'validation-failed');
    expect(problem.errors).toEqual([
      {
        in: 'query',
        pointer: '/cursor',
        detail: "must be a cursor as a page's next_cursor gave it (letters, digits, - and _)",
      },
    ]);
  });

  it('rejects a task id that is not a UUID', async () => {
    const problem = await expectProblem(await send('GET', '/api/v1/tasks/42'), 422, 'validation-failed');
    expect(problem.errors).toEqual([{ in: 'path', pointer: '/taskId', detail: 'must match format "uuid"' }]);
  });
});

describe('HTTP-level errors', () => {
  it('answers malformed JSON with 400', async () => {
    const problem = await expectProblem(
      await send('POST', '/api/v1/tasks', '{"title": "unterminated'),
      400,
      'malformed-body',
    );
    expect(problem.detail).toBe('The request body is not valid JSON.');
  });

  it('answers an unknown /api/v1 path with 404', async () => {
    await expectProblem(await send('GET', '/api/v1/projects'), 404, 'not-found');
  });

  it('answers a wrong method with 405 and an Allow header', async () => {
    const res = await send('PUT', '/api/v1/tasks', '{}');
    expect(res.headers.get('allow')).toBe('POST, GET');
    await expectProblem(res, 405, 'method-not-allowed');
  });

  it('answers a body that is not JSON with 415', async () => {
    const res = await send('POST', '/api/v1/tasks', 'title=x', { 'Content-Type': 'application/x-www-form-urlencoded' });
    await expectProblem(res, 415, 'unsupported-media-type');
  });

  it('answers a body over the 32 KiB limit with 413 and stores nothing', async () => {
    const before = await (await send('GET', '/api/v1/me')).json();
    const res = await send(
      'POST',
      '/api/v1/tasks',
      JSON.stringify({ title: 'big', description: 'x'.repeat(33 * 1024) }),
    );
    await expectProblem(res, 413, 'payload-too-large');
    expect(await (await send('GET', '/api/v1/me')).json()).toEqual(before);
  });

  it('echoes a sane X-Request-Id and replaces an unsafe one', async () => {
    const echoed = await send('GET', '/api/v1/projects', undefined, { 'X-Request-Id': 'trace-abc.123' });
    expect(echoed.headers.get('x-request-id')).toBe('trace-abc.123');
    expect(((await echoed.json()) as { request_id: string }).request_id).toBe('trace-abc.123');
    const replaced = await send('GET', '/api/v1/projects', undefined, { 'X-Request-Id': 'bad id\twith spaces' });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("a Content-Type's parameters", () => {
  it('are read as the media type alone: a JSON body is taken whatever they say', async () => {
    for (const type of [
      'application/json; charset=UTF-8',
      'Application/JSON; v=1; charset="utf-8"',
      'application/json;x',
    ])
      expect((await send('POST', '/api/v1/tasks', JSON.stringify(buildTask()), { 'Content-Type': type })).status).toBe(
        201,
      );
  });

  it("keep a multipart body's boundary, quoted or not, among others", async () => {
    const form = new FormData();
    form.append('file', new Blob([png(256)], { type: 'image/png' }), 'a.png');
    const encoded = new Response(form);
    const boundary = /boundary=(.+)$/.exec(encoded.headers.get('content-type')!)![1]!;
    const body = Buffer.from(await encoded.arrayBuffer());
    for (const type of [
      `Multipart/Form-Data; x=1; boundary="${boundary}"; y=2`,
      `multipart/form-data;boundary=${boundary}`,
    ])
      expect((await send('POST', `/api/v1/tasks/${taskId}/attachments`, body, { 'Content-Type': type })).status).toBe(
        201,
      );
  });

  it('cost nothing new to validate: a request with a parameter never seen before costs about what one more of the same costs', async () => {
    // express-openapi-validator compiles and keeps a validator for each Content-Type, parameters
    // included, that it meets: before canonicalContentType each new `v=` compiled the route's
    // request and response validators again, 39 times the CPU of a request on PGlite (more on
    // PostgreSQL, where the database's work is not in this process) and kept them for good. The
    // server runs in this process, so its CPU is this process's; the two kinds alternate, so that
    // a pause or a busy moment weighs on both, and the bound leaves room for a few ms of noise.
    const cpu = { same: 0, distinct: 0 };
    const post = async (kind: keyof typeof cpu, type: string) => {
      const start = process.cpuUsage();
      const res = await send('POST', '/api/v1/tasks', JSON.stringify(buildTask()), { 'Content-Type': type });
      expect(res.status).toBe(201);
      const used = process.cpuUsage(start);
      cpu[kind] += used.user + used.system;
    };
    await post('same', 'application/json'); // the route's validators compiled once, as in any process
    cpu.same = 0;
    for (let i = 0; i < 100; i += 1) {
      await post('same', 'application/json');
      await post('distinct', `application/json; v=${randomUUID()}`);
    }
    expect(cpu.distinct / cpu.same).toBeLessThan(10);
  });
});

describe('unknown query parameters, however they are spelled', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  // The first is what the contract fuzz found getting through: the validator's bracket parsing dropped it.
  it.each([['xa&E~w[d='], ['x[y'], ['a[b]'], ['tag[]'], ['~/odd']])('refuses %s with 422 in the query', async (key) => {
    const res = await fetch(`${server.url}/api/v1/tags?${new URLSearchParams([[key, '1']]).toString()}`, {
      headers: { Authorization: `Bearer ${await server.tokenFor()}` },
    });
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { errors: { in: string; pointer: string }[] };
    expect(problem.errors[0]).toMatchObject({ in: 'query', pointer: expect.stringMatching(/^\/./) });
  });
});

describe('error pointers are RFC 6901 JSON Pointers', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it.each([
    ['a/b', '/a~1b'],
    ['~x', '/~0x'],
    ['a~1b', '/a~01b'],
    ['/', '/~1'],
  ])('names an unknown property %s as %s', async (name, pointer) => {
    const res = await fetch(`${server.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await server.tokenFor()}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'x', [name]: 1 }),
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { errors: unknown[] }).errors).toEqual([
      { in: 'body', pointer, detail: 'must NOT have additional properties' },
    ]);
  });
});
