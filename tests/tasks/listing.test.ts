import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Task, TasksClient } from '../../packages/client/src/index.js';
import type { operations } from '../../generated/api.js';
import { buildTask } from '../helpers/factories.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

type ListQuery = NonNullable<operations['listTasks']['parameters']['query']>;
type SortParam = NonNullable<ListQuery['sort']>;

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

async function asNewUser(): Promise<TasksClient> {
  return server.client(await server.tokenFor(newUser()));
}

async function create(api: TasksClient, overrides: Parameters<typeof buildTask>[0] = {}): Promise<Task> {
  const { data, response } = await api.POST('/api/v1/tasks', { body: buildTask(overrides) });
  expect(response.status).toBe(201);
  return data!;
}

/** Every page of a listing, following next_cursor; fails on a runaway loop. */
async function listAll(api: TasksClient, query: ListQuery): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const { data, response } = await api.GET('/api/v1/tasks', {
      params: { query: { ...query, ...(cursor ? { cursor } : {}) } },
    });
    expect(response.status).toBe(200);
    ids.push(...data!.items.map((t) => t.id));
    cursor = data!.next_cursor ?? undefined;
    pages += 1;
  } while (cursor && pages < 50);
  return { ids, pages };
}

const RANK = { low: 1, medium: 2, high: 3 } as const;
const byId = (a: Task, b: Task) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const compareBy =
  <K>(key: (t: Task) => K) =>
  (a: Task, b: Task) => {
    const [x, y] = [key(a), key(b)];
    return x < y ? -1 : x > y ? 1 : byId(a, b);
  };

/** The order the API promises for each sort, computed here from the tasks themselves. */
function expectedOrder(tasks: Task[], sort: SortParam): string[] {
  const field = sort.replace(/^-/, '');
  const desc = sort.startsWith('-');
  const sorted = (some: Task[], compare: (a: Task, b: Task) => number) =>
    [...some].sort((a, b) => (desc ? -compare(a, b) : compare(a, b)));
  if (field === 'due_at') {
    // Tasks without a due date last, both ways; ties (and the undated) by id in the sort's direction.
    const dated = sorted(
      tasks.filter((t) => t.due_at !== null),
      compareBy((t) => t.due_at!),
    );
    const undated = sorted(
      tasks.filter((t) => t.due_at === null),
      byId,
    );
    return [...dated, ...undated].map((t) => t.id);
  }
  const keys: Record<string, (t: Task) => string | number> = {
    created_at: (t) => t.created_at,
    priority: (t) => RANK[t.priority],
    title: (t) => t.title.toLowerCase(),
  };
  const key = keys[field]!;
  return sorted(tasks, compareBy(key)).map((t) => t.id);
}

describe('GET /api/v1/tasks: sorting', () => {
  let api: TasksClient;
  let tasks: Task[];
  beforeAll(async () => {
    api = await asNewUser();
    // Titles are plain lower/upper-case words, so every collation orders their lower case alike.
    const specs: Parameters<typeof buildTask>[0][] = [
      { title: 'banana', priority: 'high', due_at: '2026-12-03T10:00:00.000Z' },
      { title: 'Apple', priority: 'low', due_at: null },
      { title: 'cherry', priority: 'medium', due_at: '2026-12-01T10:00:00.000Z' },
      { title: 'apple', priority: 'high', due_at: '2026-12-03T10:00:00.000Z' },
      { title: 'Date', priority: 'low', due_at: '2026-11-30T10:00:00.000Z' },
      { title: 'elder', priority: 'medium', due_at: null },
      { title: 'fig', priority: 'high', due_at: null },
      { title: 'Grape', priority: 'medium', due_at: '2027-01-01T00:00:00.000Z' },
      { title: 'banana', priority: 'low', due_at: '2026-12-01T10:00:00.000Z' },
    ];
    tasks = [];
    for (const spec of specs) tasks.push(await create(api, spec));
  });

  it.each<SortParam>(['created_at', '-created_at', 'due_at', '-due_at', 'priority', '-priority', 'title', '-title'])(
    'sort=%s orders every page as promised (ties by id, undated last) and pages cover each task once',
    async (sort) => {
      const { ids, pages } = await listAll(api, { sort, limit: 2 });
      expect(pages).toBe(5);
      expect(ids).toEqual(expectedOrder(tasks, sort));
    },
  );

  it('defaults to newest first', async () => {
    const { ids } = await listAll(api, { limit: 4 });
    expect(ids).toEqual(expectedOrder(tasks, '-created_at'));
  });
});

describe('GET /api/v1/tasks: filters', () => {
  let api: TasksClient;
  const t: Record<string, Task> = {};
  beforeAll(async () => {
    api = await asNewUser();
    t.passport = await create(api, {
      title: 'Renew PASSPORT',
      description: null,
      priority: 'high',
      tags: ['admin', 'travel'],
      due_at: '2026-12-01T09:00:00.000Z',
    });
    t.percent = await create(api, {
      title: 'Reach 100% coverage',
      priority: 'medium',
      tags: ['work'],
      due_at: '2026-12-05T00:00:00.000Z',
    });
    t.thousand = await create(api, { title: 'Read 1000 pages', priority: 'low', tags: ['home'], due_at: null });
    t.underscore = await create(api, {
      title: 'rename snake_case',
      description: 'in the admin tool',
      priority: 'medium',
      tags: ['work', 'admin'],
      due_at: '2026-11-20T00:00:00.000Z',
    });
    t.snakecase = await create(api, {
      title: 'rename snakeXcase',
      priority: 'high',
      tags: ['work'],
      due_at: '2026-11-25T00:00:00.000Z',
    });
    t.backslash = await create(api, {
      title: 'Escape C:\\temp',
      priority: 'low',
      tags: ['admin', 'work', 'travel'],
      due_at: '2026-12-01T09:00:00.000Z',
    });
    t.done = await create(api, {
      title: 'Booked the hotel',
      description: 'travel passport copy attached',
      priority: 'high',
      tags: ['travel'],
      completed: true,
      due_at: null,
    });
  });

  const ids = async (query: ListQuery) => (await listAll(api, { ...query, sort: 'created_at' })).ids;

  it('priority is repeatable and matches any of the values', async () => {
    expect(await ids({ priority: ['high'] })).toEqual([t.passport!.id, t.snakecase!.id, t.done!.id]);
    expect(await ids({ priority: ['low', 'medium'] })).toEqual([
      t.percent!.id,
      t.thousand!.id,
      t.underscore!.id,
      t.backslash!.id,
    ]);
  });

  it('tag is repeatable and a task must carry every given tag', async () => {
    expect(await ids({ tag: ['admin'] })).toEqual([t.passport!.id, t.underscore!.id, t.backslash!.id]);
    expect(await ids({ tag: ['admin', 'travel'] })).toEqual([t.passport!.id, t.backslash!.id]);
    expect(await ids({ tag: ['admin', 'nothing'] })).toEqual([]);
  });

  it('due_after is inclusive, due_before exclusive, and undated tasks match neither', async () => {
    expect(await ids({ due_after: '2026-12-01T09:00:00.000Z' })).toEqual([
      t.passport!.id,
      t.percent!.id,
      t.backslash!.id,
    ]);
    expect(await ids({ due_before: '2026-12-01T09:00:00.000Z' })).toEqual([t.underscore!.id, t.snakecase!.id]);
    expect(await ids({ due_after: '2026-11-25T00:00:00+00:00', due_before: '2026-12-05T00:00:00Z' })).toEqual([
      t.passport!.id,
      t.snakecase!.id,
      t.backslash!.id,
    ]);
  });

  it('q searches title and description case-insensitively, with %, _ and \\ taken literally', async () => {
    expect(await ids({ q: 'passport' })).toEqual([t.passport!.id, t.done!.id]);
    expect(await ids({ q: '100%' })).toEqual([t.percent!.id]);
    expect(await ids({ q: '%' })).toEqual([t.percent!.id]);
    expect(await ids({ q: 'snake_case' })).toEqual([t.underscore!.id]);
    expect(await ids({ q: '_' })).toEqual([t.underscore!.id]);
    expect(await ids({ q: 'c:\\TEMP' })).toEqual([t.backslash!.id]);
    expect(await ids({ q: 'ADMIN TOOL' })).toEqual([t.underscore!.id]);
  });

  it('filters combine with status, with each other and with any sort, across pages', async () => {
    expect(await ids({ status: 'completed', tag: ['travel'] })).toEqual([t.done!.id]);
    expect(await ids({ status: 'pending', q: 'passport' })).toEqual([t.passport!.id]);
    const { ids: work } = await listAll(api, {
      tag: ['work'],
      priority: ['medium', 'high'],
      sort: '-due_at',
      limit: 1,
    });
    expect(work).toEqual([t.percent!.id, t.snakecase!.id, t.underscore!.id]);
  });

  it('the Link header repeats the filters and the sort with the next cursor', async () => {
    const { data, response } = await api.GET('/api/v1/tasks', {
      params: { query: { tag: ['work'], sort: 'title', limit: 1 } },
    });
    expect(response.headers.get('link')).toBe(
      `</api/v1/tasks?tag=work&sort=title&limit=1&cursor=${data!.next_cursor}>; rel="next"`,
    );
  });
});

describe('GET /api/v1/tasks: cursors', () => {
  let api: TasksClient;
  let token: string;
  beforeAll(async () => {
    token = await server.tokenFor(newUser());
    api = server.client(token);
    for (let i = 0; i < 5; i += 1) {
      await create(api, {
        title: `task ${i}`,
        priority: i % 2 ? 'high' : 'low',
        tags: ['x'],
        due_at: `2026-12-0${i + 1}T00:00:00.000Z`,
      });
    }
  });

  async function firstCursor(query: ListQuery): Promise<string> {
    const cursor = (await api.GET('/api/v1/tasks', { params: { query: { ...query, limit: 1 } } })).data!.next_cursor;
    expect(cursor).toEqual(expect.any(String)); // the query has a second page
    return cursor!;
  }
  const reencode = (cursor: string, change: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(cursor, 'base64url').toString()), ...change })).toString(
      'base64url',
    );

  it('following the Link header with the same token gives the next page', async () => {
    const first = await api.GET('/api/v1/tasks', { params: { query: { sort: '-priority', tag: ['x'], limit: 2 } } });
    const link = first.response.headers.get('link')!;
    const next = await fetch(`${server.url}${link.slice(1, link.indexOf('>'))}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = (await next.json()) as { items: Task[] };
    const all = await listAll(api, { sort: '-priority', tag: ['x'], limit: 2 });
    expect(body.items.map((t) => t.id)).toEqual(all.ids.slice(2, 4));
  });

  it.each<[string, ListQuery, ListQuery]>([
    ['another sort', { sort: 'title' }, { sort: '-title' }],
    ['another status', {}, { status: 'pending' }],
    ['another tag', { tag: ['x'] }, { tag: ['y'] }],
    ['another q', { q: 'task' }, { q: 'tas' }],
    ['another priority set', { priority: ['high'] }, { priority: ['high', 'low'] }],
    ['another due range', { due_before: '2030-01-01T00:00:00Z' }, { due_before: '2031-01-01T00:00:00Z' }],
  ])('a cursor used with %s is 422', async (_, issuedFor, usedWith) => {
    const cursor = await firstCursor(issuedFor);
    const { error, response } = await api.GET('/api/v1/tasks', { params: { query: { ...usedWith, cursor } } });
    expect(response.status).toBe(422);
    expect(error!.errors).toEqual([
      { in: 'query', pointer: '/cursor', detail: 'it was issued for a different sort or different filters' },
    ]);
  });

  it('the same query spelt differently accepts its cursor', async () => {
    const cursor = await firstCursor({
      priority: ['low', 'high'],
      tag: ['x', 'x'],
      due_before: '2030-01-01T00:00:00Z',
    });
    const { response } = await api.GET('/api/v1/tasks', {
      params: { query: { priority: ['high', 'low'], tag: ['x'], due_before: '2030-01-01T01:00:00+01:00', cursor } },
    });
    expect(response.status).toBe(200);
  });

  it.each<[string, (c: string) => string, ListQuery]>([
    ['random text', () => 'not-a-cursor', {}],
    ['base64url of something that is not JSON', () => Buffer.from('{oops').toString('base64url'), {}],
    ['a forged id', (c) => reencode(c, { i: "1' or '1'='1" }), {}],
    ['a forged timestamp key', (c) => reencode(c, { k: 'yesterday' }), {}],
    ['a forged priority key', (c) => reencode(c, { k: '4' }), { sort: 'priority' }],
    ['an infinity on the wrong side', (c) => reencode(c, { k: '-infinity' }), { sort: 'due_at' }],
    ['a truncated cursor', (c) => c.slice(0, 20), {}],
  ])('a cursor with %s is 422, never 500', async (_, tamper, query) => {
    const cursor = tamper(await firstCursor(query));
    const { error, response } = await api.GET('/api/v1/tasks', { params: { query: { ...query, cursor } } });
    expect(response.status).toBe(422);
    expect(error!.errors![0]).toMatchObject({ in: 'query', pointer: '/cursor' });
  });

  it('no page skips or repeats a task when tasks are created and deleted between pages, whatever the sort', async () => {
    const own = await asNewUser();
    const made: Task[] = [];
    for (const priority of ['low', 'high', 'medium', 'high', 'low', 'medium'] as const)
      made.push(await create(own, { priority }));
    const page1 = await own.GET('/api/v1/tasks', { params: { query: { sort: '-priority', limit: 3 } } });
    const shown = page1.data!.items;
    // A new task that sorts before the cursor, and the deletion of page 1's last row.
    await create(own, { priority: 'high' });
    await own.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: shown[2]!.id } } });
    const page2 = await own.GET('/api/v1/tasks', {
      params: { query: { sort: '-priority', limit: 3, cursor: page1.data!.next_cursor! } },
    });
    const expectedRest = expectedOrder(made, '-priority').filter((id) => !shown.some((s) => s.id === id));
    expect(page2.data!.items.map((t) => t.id)).toEqual(expectedRest);
  });
});

describe('GET /api/v1/tags', () => {
  it("lists the caller's tags with counts, most used first, ties alphabetical, nobody else's", async () => {
    const api = await asNewUser();
    await create(api, { tags: ['home', 'errands'] });
    await create(api, { tags: ['errands'] });
    await create(api, { tags: ['work', 'errands', 'home'] });
    await create(api, { tags: [] });
    const other = await asNewUser();
    await create(other, { tags: ['secret', 'home'] });

    const { data, response } = await api.GET('/api/v1/tags');
    expect(response.status).toBe(200);
    expect(data).toEqual({
      items: [
        { tag: 'errands', count: 3 },
        { tag: 'home', count: 2 },
        { tag: 'work', count: 1 },
      ],
    });
  });

  it('is empty for a user without tasks', async () => {
    const { data } = await (await asNewUser()).GET('/api/v1/tags');
    expect(data).toEqual({ items: [] });
  });
});

describe('GET /api/v1/tasks: instants as people type them', () => {
  it('accepts due_before/due_after with unencoded colons and a +offset (curl-style)', async () => {
    const token = await server.tokenFor(newUser());
    const api = server.client(token);
    const due = await create(api, { due_at: '2026-12-01T09:00:00.000Z' });
    await create(api, { due_at: '2027-06-01T09:00:00.000Z' });
    const res = await fetch(
      `${server.url}/api/v1/tasks?due_after=2026-11-30T00:00:00Z&due_before=2026-12-02T00:00:00%2B01:00`,
      {
        headers: { Authorization: `Bearer ${token}` },
      },
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as { items: Task[] }).items.map((t) => t.id)).toEqual([due.id]);
  });
});
