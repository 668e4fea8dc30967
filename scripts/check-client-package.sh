#!/usr/bin/env bash
# npm run check:client-package: the published @tasks-api/client as a stranger gets it. Builds the
# package, packs it, installs only the tarball (and its one dependency, openapi-fetch, from the
# registry or npm's cache) into a fresh project outside this repository, type-checks a program
# using every feature with `tsc --strict` under moduleResolution nodenext and bundler, and runs
# the package from the tarball with node (import, require, and the client's behaviour offline).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tsc="$root/node_modules/.bin/tsc"

say() { printf '  %s\n' "$*"; }

# The package's copy of the types is what `npm run generate` writes.
if ! cmp -s generated/api.ts packages/client/src/api.ts; then
  echo "packages/client/src/api.ts differs from generated/api.ts: run npm run generate" >&2
  exit 1
fi

npm run --silent build -w @tasks-api/client

# Browser-safe: nothing Node-only in what ships.
if grep -nE "from ['\"]node:|require\(|process\.|Buffer\b|__dirname" packages/client/dist/*.js; then
  echo "packages/client/dist uses Node-only APIs (above); the package must run in browsers" >&2
  exit 1
fi
say "dist uses no Node-only API"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$(npm pack -w @tasks-api/client --ignore-scripts --pack-destination "$work" --silent | tail -n 1)
tarball="$work/$tarball"
listing=$(tar -tzf "$tarball")
for file in package/package.json package/README.md package/LICENSE package/dist/index.js package/dist/index.d.ts package/dist/api.d.ts; do
  grep -qx "$file" <<<"$listing" || { echo "$file is missing from $(basename "$tarball")" >&2; exit 1; }
done
if grep -vE '^package/(package\.json|README\.md|LICENSE|dist/[a-z]+\.(js|d\.ts|js\.map|d\.ts\.map)|src/[a-z]+\.ts)$' <<<"$listing"; then
  echo "unexpected files in $(basename "$tarball") (above)" >&2
  exit 1
fi
say "$(basename "$tarball"): $(wc -l <<<"$listing") files, $(du -k "$tarball" | cut -f1) KiB"

# A fresh project outside this repository (so npm finds no workspace), with only the tarball.
app="$work/app"
mkdir -p "$app/src"
cat >"$app/package.json" <<'JSON'
{ "name": "tasks-client-consumer", "private": true, "version": "0.0.0", "type": "module" }
JSON
(cd "$app" && npm install --no-audit --no-fund --ignore-scripts --prefer-offline --loglevel=error "$tarball" >/dev/null)
deps=$(cd "$app" && node -e "const l=require('./package-lock.json'); console.log(Object.keys(l.packages).filter(Boolean).map(k=>k.replace(/^node_modules\//,'')).sort().join(' '))")
[ "$deps" = "@tasks-api/client openapi-fetch openapi-typescript-helpers" ] || { echo "installed more than the client and openapi-fetch: $deps" >&2; exit 1; }
say "installed: $deps"

cat >"$app/src/app.ts" <<'TS'
import {
  createSession,
  createTasksClient,
  ifMatch,
  paginate,
  ProblemError,
  unwrap,
  type components,
  type operations,
  type Problem,
  type Session,
  type Task,
  type TasksClient,
  type paths,
} from '@tasks-api/client';

const storage = {
  get: () => localStorage.getItem('tasks-api'),
  set: (value: string) => localStorage.setItem('tasks-api', value),
  remove: () => localStorage.removeItem('tasks-api'),
};
export const session: Session = createSession({ baseUrl: 'https://api.example.com', storage, locks: navigator.locks });
export const api: TasksClient = createTasksClient({ baseUrl: 'https://api.example.com', session });

export async function journey(): Promise<Task[]> {
  await session.login({ email: 'ada@example.com', password: 'correct horse battery staple' });
  const task: Task = await unwrap(api.POST('/api/v1/tasks', { body: { title: 'Write the client', priority: 'high' } }));
  const done = await unwrap(
    api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: task.id }, header: ifMatch(task) }, body: { completed: true } }),
  );
  const version: number = done.version;
  void version;
  const all: Task[] = [];
  for await (const item of paginate(api, '/api/v1/tasks', { params: { query: { status: 'completed', limit: 100 } } })) all.push(item);
  for await (const attachment of paginate(api, '/api/v1/tasks/{taskId}/attachments', { params: { path: { taskId: task.id } } })) {
    const size: number = attachment.size;
    void size;
  }
  await session.logout();
  return all;
}

export async function create(title: string): Promise<string> {
  try {
    return (await unwrap(api.POST('/api/v1/tasks', { body: { title } }))).id;
  } catch (error) {
    if (error instanceof ProblemError && error.is(422)) {
      const problem: Problem = error.problem;
      return (problem.errors ?? []).map((e) => `${e.in} ${e.pointer}: ${e.detail}`).join('\n');
    }
    if (error instanceof ProblemError) return `${error.status} ${error.type} ${error.response.headers.get('Retry-After') ?? ''}`;
    throw error;
  }
}

export async function plain(): Promise<string | undefined> {
  const { data, error } = await api.GET('/api/v1/tasks', { params: { query: { limit: 20 } } });
  if (error) return error.detail;
  return data.next_cursor ?? undefined;
}

export type Schemas = keyof components['schemas'];
export type ListTasks = operations['listTasks'];
export type TaskPath = paths['/api/v1/tasks/{taskId}'];

// The contract, enforced by the compiler:
// @ts-expect-error `title` is a string
void api.POST('/api/v1/tasks', { body: { title: 42 } });
// @ts-expect-error there is no such path
void api.GET('/api/v1/todos');
// @ts-expect-error /api/v1/tags is not a paged list
void paginate(api, '/api/v1/tags');
// @ts-expect-error a task's attachments need its id
void paginate(api, '/api/v1/tasks/{taskId}/attachments');
TS

for resolution in nodenext bundler; do
  module=$([ "$resolution" = nodenext ] && echo nodenext || echo esnext)
  cat >"$app/tsconfig.$resolution.json" <<JSON
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2022", "DOM", "DOM.Iterable"],
    "module": "$module",
    "moduleResolution": "$resolution",
    "types": [],
    "strict": true,
    "noEmit": true,
    "skipLibCheck": false
  },
  "include": ["src"]
}
JSON
  started=$(date +%s%N)
  (cd "$app" && "$tsc" -p "tsconfig.$resolution.json")
  say "tsc --strict: moduleResolution $resolution ($(( ($(date +%s%N) - started) / 1000000 )) ms, skipLibCheck off)"
done

# A path the package does not export is refused with an error that names the package and the
# path, by the compiler and by Node, not a deep resolution failure inside it.
cat >"$app/src/wrong.ts" <<'TS'
import { createTasksClient } from '@tasks-api/client/src/index.js';
void createTasksClient;
TS
wrong=$(cd "$app" && "$tsc" -p tsconfig.bundler.json 2>&1 || true)
grep -q "error TS2307: Cannot find module '@tasks-api/client/src/index.js'" <<<"$wrong" || { echo "tsc on a wrong import path said: $wrong" >&2; exit 1; }
rm "$app/src/wrong.ts"
wrong=$(cd "$app" && node --input-type=module -e "await import('@tasks-api/client/dist/api.js')" 2>&1 || true)
grep -q "ERR_PACKAGE_PATH_NOT_EXPORTED.*Package subpath './dist/api.js' is not defined by \"exports\" in .*@tasks-api/client/package.json" <<<"$wrong" ||
  grep -q "Package subpath './dist/api.js' is not defined by \"exports\"" <<<"$wrong" || { echo "node on a wrong import path said: $wrong" >&2; exit 1; }
say "a path the package does not export: tsc TS2307 and node ERR_PACKAGE_PATH_NOT_EXPORTED name it"

# Run what the tarball installed: import and require resolve, and the client behaves (against a
# fetch that answers like the API would, so no server and no network).
cat >"$app/run.mjs" <<'JS'
import * as client from '@tasks-api/client';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

for (const name of ['createTasksClient', 'createSession', 'paginate', 'unwrap', 'ProblemError', 'ifMatch']) {
  assert.equal(typeof client[name], 'function', `@tasks-api/client exports ${name}`);
}
const required = createRequire(import.meta.url)('@tasks-api/client');
assert.equal(required.createTasksClient, client.createTasksClient, 'require() gets the same module (require(esm), Node >= 20.19)');
assert.equal(createRequire(import.meta.url)('@tasks-api/client/package.json').name, '@tasks-api/client');

const sent = [];
const json = (status, body, headers = {}) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
const fetch = async (request) => {
  sent.push(request);
  if (request.method === 'POST') return json(201, { id: 't1', title: 'x', version: 7 }, { ETag: '"7"' });
  return json(422, { type: 'urn:tasks-api:problem:validation-failed', title: 'Validation failed', status: 422, detail: 'no', request_id: 'r1', errors: [] });
};
const api = client.createTasksClient({ baseUrl: 'https://api.example.com', token: () => 'tok', fetch });
const task = await client.unwrap(api.POST('/api/v1/tasks', { body: { title: 'x' } }));
assert.match(sent[0].headers.get('Idempotency-Key'), /^[0-9a-f-]{36}$/);
assert.equal(sent[0].headers.get('Authorization'), 'Bearer tok');
assert.deepEqual(client.ifMatch(task), { 'If-Match': '"7"' });
await assert.rejects(client.unwrap(api.GET('/api/v1/tasks')), (error) => error instanceof client.ProblemError && error.status === 422 && error.type.endsWith('validation-failed'));
console.log('  runtime: import, require and the client from the tarball work');
JS
(cd "$app" && node run.mjs)
echo "check:client-package: ok"
