// The scenario through the SDK @hey-api/openapi-ts generates (out/hey-api: the Fetch API client,
// its types and one function per operation), used the way its docs show.
import { client } from '../out/hey-api/client.gen.js';
import { createTask, getTask, listTasks, login, register, updateTask } from '../out/hey-api/sdk.gen.js';
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
} from './common.js';

/** The Response of a call; the client gives none when the request could not be sent at all. */
function responseOf(result: { response?: Response; error?: unknown }): Response {
  if (!result.response) fail('the request could not be sent', String(result.error));
  return result.response;
}

await run('@hey-api/openapi-ts (client-fetch)', async () => {
  step("the generated client's default baseUrl (from `servers`) joins a path into a well-formed URL");
  const defaults = client.getConfig();
  const built = client.buildUrl({ ...defaults, url: '/api/v1/tasks' });
  // Relative (a same-origin frontend) or absolute (a default server): either way the path must
  // come out as it is, not as //api/v1/tasks (a host named "api") or under a doubled prefix.
  check(
    new URL(built, origin).pathname === '/api/v1/tasks' && !built.includes('//api/'),
    `with the default baseUrl ${JSON.stringify(defaults.baseUrl)}, /api/v1/tasks is requested at ${built}`,
  );

  let token: string | undefined;
  client.setConfig({ baseUrl: origin, auth: () => token });

  step('register and log in through the built-in issuer');
  const credentials = account('hey-api');
  const registered = await register({ body: credentials });
  check(responseOf(registered).status === 201, `register answered ${responseOf(registered).status}, not 201`, registered.error);
  const session = await login({ body: credentials });
  if (!session.data) fail(`login answered ${responseOf(session).status}, not 200`, session.error);
  token = session.data.access_token;

  step('create tasks with only a title (every other field has a default)');
  for (const title of [...matching, ...decoys]) {
    const created = await createTask({ body: { title } });
    if (!created.data) fail(`createTask answered ${responseOf(created).status}, not 201`, created.error);
    check(responseOf(created).status === 201, `createTask answered ${responseOf(created).status}, not 201`);
    check(created.data.title === title, 'the created task has another title', created.data);
    // @hey-api/openapi-ts does not type response headers: read from the Response.
    const location = responseOf(created).headers.get('Location');
    check(location !== null && new URL(location, origin).pathname === `/api/v1/tasks/${created.data.id}`, `Location is ${location}`);
  }

  step(`list with q=${JSON.stringify(query)} and limit=1: page 1`);
  const first = await listTasks({ query: { q: query, limit: 1 } });
  if (!first.data) fail(`listTasks answered ${responseOf(first).status}`, first.error);
  check(first.data.items.length === 1, `page 1 has ${first.data.items.length} tasks, not 1`, first.data);
  check(first.data.next_cursor !== null, 'page 1 of two matches has no next_cursor', first.data);

  step('follow next_cursor: page 2');
  const second = await listTasks({ query: { q: query, limit: 1, cursor: first.data.next_cursor } });
  if (!second.data) fail(`listTasks (page 2) answered ${responseOf(second).status}`, second.error);
  check(second.data.items.length === 1, `page 2 has ${second.data.items.length} tasks, not 1`, second.data);
  const found = [...first.data.items, ...second.data.items].map((task) => task.title).sort();
  check(
    JSON.stringify(found) === JSON.stringify([...matching].sort()),
    `q=${JSON.stringify(query)} found ${JSON.stringify(found)}, not exactly ${JSON.stringify(matching)}`,
  );
  if (second.data.next_cursor !== null) {
    const third = await listTasks({ query: { q: query, limit: 1, cursor: second.data.next_cursor } });
    check(third.data?.items.length === 0, 'a third page has tasks: the search matched more than the two titles', third.data);
  }

  step('conditional update: GET the ETag, PATCH with If-Match → 200');
  const taskId = first.data.items[0]!.id;
  const read = await getTask({ path: { taskId } });
  if (!read.data) fail(`getTask answered ${responseOf(read).status}`, read.error);
  const etag = responseOf(read).headers.get('ETag');
  check(etag !== null, 'getTask has no ETag header');
  const updated = await updateTask({ path: { taskId }, headers: { 'If-Match': etag }, body: { completed: true } });
  if (!updated.data) fail(`updateTask with the current ETag answered ${responseOf(updated).status}, not 200`, updated.error);
  check(responseOf(updated).status === 200, `updateTask with the current ETag answered ${responseOf(updated).status}, not 200`);
  check(updated.data.completed, 'the patched task is not completed', updated.data);
  check(responseOf(updated).headers.get('ETag') !== etag, `the ETag did not change (${etag})`);

  step('updateTask again with the stale ETag → 412, a typed error narrowed on status');
  const stale = await updateTask({ path: { taskId }, headers: { 'If-Match': etag }, body: { completed: false } });
  if (stale.data !== undefined || !stale.error) fail(`updateTask with a stale ETag answered ${responseOf(stale).status}, not 412`, stale.data);
  const conflict = stale.error;
  if (conflict.status !== 412) fail(`updateTask with a stale ETag answered ${conflict.status}, not 412`, conflict);
  type PreconditionFailed = typeof conflict;
  type _Status412Narrowed = Expect<Equal<PreconditionFailed['status'], 412>>;
  type _Type412IsLiteral = Expect<IsLiteral<PreconditionFailed['type']>>;
  check(responseOf(stale).status === 412, `the response is ${responseOf(stale).status}, its body says 412`);
  check(conflict.type.length > 0 && conflict.detail.length > 0, 'the 412 problem has no type or detail', conflict);

  step('updateTask with an empty title → 422, a typed error with its errors array');
  const invalid = await updateTask({ path: { taskId }, body: { title: '' } });
  if (invalid.data !== undefined || !invalid.error) fail(`updateTask with an empty title answered ${responseOf(invalid).status}, not 422`, invalid.data);
  const problem = invalid.error;
  if (problem.status !== 422) fail(`updateTask with an empty title answered ${problem.status}, not 422`, problem);
  type ValidationFailed = typeof problem;
  type _Status422Narrowed = Expect<Equal<ValidationFailed['status'], 422>>;
  type _Type422IsLiteral = Expect<IsLiteral<ValidationFailed['type']>>;
  const pointers = problem.errors.map((entry) => `${entry.in}:${entry.pointer}`);
  check(pointers.includes('body:/title'), `the 422 names ${JSON.stringify(pointers)}, not body:/title`, problem);
});
