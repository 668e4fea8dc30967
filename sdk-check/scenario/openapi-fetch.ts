// The scenario through openapi-fetch over the types openapi-typescript generates with its default
// flags (out/openapi-typescript/api.ts), as a frontend team would set it up from the contract.
import createClient from 'openapi-fetch';
import type { paths } from '../out/openapi-typescript/api.js';
import {
  account,
  check,
  decoys,
  type Equal,
  type Expect,
  fail,
  type IsLiteral,
  matching,
  origin,
  query,
  run,
  step,
  typedHeaders,
} from './common.js';

type TaskPath = paths['/api/v1/tasks/{taskId}'];
type CreatedHeaders = paths['/api/v1/tasks']['post']['responses'][201]['headers'];
type PageHeaders = paths['/api/v1/tasks']['get']['responses'][200]['headers'];
type ReadHeaders = TaskPath['get']['responses'][200]['headers'];
type UpdatedHeaders = TaskPath['patch']['responses'][200]['headers'];

await run('openapi-typescript + openapi-fetch', async () => {
  const api = createClient<paths>({ baseUrl: origin });

  step('register and log in through the built-in issuer');
  const credentials = account('openapi-fetch');
  const registered = await api.POST('/api/v1/auth/register', { body: credentials });
  check(registered.response.status === 201, `register answered ${registered.response.status}, not 201`, registered.error);
  const login = await api.POST('/api/v1/auth/login', { body: credentials });
  if (!login.data) fail(`login answered ${login.response.status}, not 200`, login.error);
  const token = login.data.access_token;
  api.use({
    onRequest({ request }) {
      request.headers.set('Authorization', `Bearer ${token}`);
      return request;
    },
  });

  step('create tasks with only a title (every other field has a default)');
  const ids = new Map<string, string>();
  for (const title of [...matching, ...decoys]) {
    const created = await api.POST('/api/v1/tasks', { body: { title } });
    if (!created.data) fail(`POST /api/v1/tasks answered ${created.response.status}, not 201`, created.error);
    check(created.response.status === 201, `POST /api/v1/tasks answered ${created.response.status}, not 201`);
    check(created.data.title === title, 'the created task has another title', created.data);
    const location = typedHeaders<CreatedHeaders>(created.response).get('Location');
    check(new URL(location, origin).pathname === `/api/v1/tasks/${created.data.id}`, `Location is ${location}`);
    ids.set(created.data.id, title);
  }

  step(`list with q=${JSON.stringify(query)} and limit=1: page 1`);
  const first = await api.GET('/api/v1/tasks', { params: { query: { q: query, limit: 1 } } });
  if (!first.data) fail(`GET /api/v1/tasks answered ${first.response.status}`, first.error);
  check(first.data.items.length === 1, `page 1 has ${first.data.items.length} tasks, not 1`, first.data);
  check(first.data.next_cursor !== null, 'page 1 of two matches has no next_cursor', first.data);
  const link = typedHeaders<PageHeaders>(first.response).get('Link');
  check(link.endsWith('; rel="next"'), `Link is ${link}`);

  step('follow next_cursor: page 2');
  const second = await api.GET('/api/v1/tasks', {
    params: { query: { q: query, limit: 1, cursor: first.data.next_cursor } },
  });
  if (!second.data) fail(`GET /api/v1/tasks (page 2) answered ${second.response.status}`, second.error);
  check(second.data.items.length === 1, `page 2 has ${second.data.items.length} tasks, not 1`, second.data);
  const found = [...first.data.items, ...second.data.items].map((task) => task.title).sort();
  check(
    JSON.stringify(found) === JSON.stringify([...matching].sort()),
    `q=${JSON.stringify(query)} found ${JSON.stringify(found)}, not exactly ${JSON.stringify(matching)}`,
  );
  if (second.data.next_cursor !== null) {
    const third = await api.GET('/api/v1/tasks', {
      params: { query: { q: query, limit: 1, cursor: second.data.next_cursor } },
    });
    check(third.data?.items.length === 0, 'a third page has tasks: the search matched more than the two titles', third.data);
  }

  step('conditional update: GET the ETag (a typed response header), PATCH with If-Match → 200');
  const taskId = first.data.items[0]!.id;
  const read = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId } } });
  if (!read.data) fail(`GET /api/v1/tasks/{taskId} answered ${read.response.status}`, read.error);
  const etag = typedHeaders<ReadHeaders>(read.response).get('ETag');
  const updated = await api.PATCH('/api/v1/tasks/{taskId}', {
    params: { path: { taskId }, header: { 'If-Match': etag } },
    body: { completed: true },
  });
  if (!updated.data) fail(`PATCH with the current ETag answered ${updated.response.status}, not 200`, updated.error);
  check(updated.response.status === 200, `PATCH with the current ETag answered ${updated.response.status}, not 200`);
  check(updated.data.completed, 'the patched task is not completed', updated.data);
  const next = typedHeaders<UpdatedHeaders>(updated.response).get('ETag');
  check(next !== etag, `the ETag did not change (${etag})`);

  step('PATCH again with the stale ETag → 412, a typed error narrowed on status');
  const stale = await api.PATCH('/api/v1/tasks/{taskId}', {
    params: { path: { taskId }, header: { 'If-Match': etag } },
    body: { completed: false },
  });
  if (stale.data !== undefined || !stale.error) fail(`PATCH with a stale ETag answered ${stale.response.status}, not 412`, stale.data);
  const conflict = stale.error;
  if (conflict.status !== 412) fail(`PATCH with a stale ETag answered ${conflict.status}, not 412`, conflict);
  type PreconditionFailed = typeof conflict;
  // Narrowing on `status` must leave only the 412 response's schema, whose `type` is known.
  type _Status412Narrowed = Expect<Equal<PreconditionFailed['status'], 412>>;
  type _Type412IsLiteral = Expect<IsLiteral<PreconditionFailed['type']>>;
  check(stale.response.status === 412, `the response is ${stale.response.status}, its body says 412`);
  check(conflict.type.length > 0 && conflict.detail.length > 0, 'the 412 problem has no type or detail', conflict);

  step('PATCH with an empty title → 422, a typed error with its errors array');
  const invalid = await api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId } }, body: { title: '' } });
  if (invalid.data !== undefined || !invalid.error) fail(`PATCH with an empty title answered ${invalid.response.status}, not 422`, invalid.data);
  const problem = invalid.error;
  if (problem.status !== 422) fail(`PATCH with an empty title answered ${problem.status}, not 422`, problem);
  type ValidationFailed = typeof problem;
  type _Status422Narrowed = Expect<Equal<ValidationFailed['status'], 422>>;
  type _Type422IsLiteral = Expect<IsLiteral<ValidationFailed['type']>>;
  // `errors` is required on a 422: no optional chaining needed.
  const pointers = problem.errors.map((entry) => `${entry.in}:${entry.pointer}`);
  check(pointers.includes('body:/title'), `the 422 names ${JSON.stringify(pointers)}, not body:/title`, problem);
});
