// The contract's examples are requests that succeed. For every operation of the bundled contract
// (generated/openapi.json) this file builds one whole request from its examples alone — path and
// query parameters, headers, the first media type's request body — sends it to a fresh server and
// requires one of the operation's success statuses; a list's `Link` examples are followed too.
// It is what an outside conformance run does with the document, so an example that only makes
// sense beside other values (a cursor issued for other filters, an ETag of no version) fails here.
//
// What the examples cannot carry is the state of one database. Before sending, the test makes
// through the API the resources the examples name, and sends theirs in place of the example ids:
//   - taskId and webhookId: an attachments cursor is bound to its task and a deliveries cursor to
//     its endpoint (the parent's id is part of the query a cursor belongs to), so the contract's
//     cursor examples only work on the contract's example parents. The task and the endpoint are
//     made through the API and then given the example ids in the database (the API cannot choose
//     an id), right after creation, before anything refers to them.
//   - attachmentId and deliveryId: the ids of an attachment and a delivery made through the API.
//   - refresh_token (body of refreshToken and logout): one the built-in issuer issued to the
//     example account, since a refresh token cannot be made up.
// Cursors are sent as they are: a page after a position that does not exist is still a valid,
// possibly empty, page, and that the cursor belongs to the example query is what this proves.
//
// Conditional headers hold ETags of no particular state: If-Match (updateTask, replaceTask,
// deleteTask) and If-Range (downloadAttachment) are sent with the resource's current ETag, read
// with a GET of the same path, so the precondition holds and the range is honoured (206).
// If-None-Match (getTask, downloadAttachment) is left out: with the current ETag the answer is a
// 304, which is not the success of a GET that has a 200; getTask's example ("1") is the ETag of
// every new task, so it gives a 304 too, and downloadAttachment's would give a 200 or 206 only
// because it names no file the test uploaded. Nothing else is left out.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { loadContract } from '../../src/http/contract.js';
import { png, pdf } from '../helpers/files.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an OpenAPI node, walked by whatever keys the contract has
type Node = Record<string, any>;
interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Node;
  example?: unknown;
  examples?: Record<string, Node>;
}
interface Operation {
  operationId: string;
  parameters?: Node[];
  requestBody?: Node;
  responses: Record<string, Node>;
  security?: Record<string, string[]>[];
}

const spec: Node = loadContract().spec;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;

/** `#/components/...` → the node it names, however many $refs deep. */
function deref<T = Node>(node: Node): T {
  let current = node;
  while (current && typeof current.$ref === 'string') {
    current = current.$ref
      .slice(2)
      .split('/')
      .reduce<Node>((at, key) => at[key.replace(/~1/g, '/').replace(/~0/g, '~')] as Node, spec);
  }
  return current as T;
}

/** An `example`, else the first of `examples` (what a tool sends when it picks one), else undefined. */
function exampleOf(node: Node): unknown {
  if (node.example !== undefined) return node.example;
  const first = Object.values((node.examples ?? {}) as Record<string, Node>)[0];
  return first === undefined ? undefined : deref(first).value;
}
/** The example of a parameter or header, else its schema's. */
const exampleOrSchemas = (node: Node): unknown => exampleOf(node) ?? (node.schema as Node | undefined)?.example;
/** A parameter's example as it goes on the wire. */
const wire = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));

const operations = Object.entries(spec.paths as Record<string, Node>).flatMap(([path, item]) =>
  METHODS.filter((method) => item[method]).map((method) => {
    const operation = item[method] as Operation;
    const parameters = [...((item.parameters as Node[]) ?? []), ...(operation.parameters ?? [])].map((p) =>
      deref<Parameter>(p),
    );
    return { path, method, operation, parameters };
  }),
);
type Planned = (typeof operations)[number];

/**
 * The order the operations are sent in: what creates before what reads it, deletions last, the
 * built-in issuer's calls in the order an account lives. Every operation of the contract is either
 * here or in LEFT_OUT, so a new operation fails this file until it is placed.
 */
const ORDER = [
  'getLiveness',
  'getReadiness',
  'getOpenApiDocument',
  'getOpenApiYaml',
  'getDocs',
  'getMetrics',
  'getJwks',
  'register',
  'login',
  'refreshToken',
  'logout',
  'createTask',
  'listTasks',
  'getTask',
  'updateTask',
  'replaceTask',
  'listTags',
  'listChanges',
  'getMe',
  'uploadAttachment',
  'listAttachments',
  'getAttachment',
  'downloadAttachment',
  'createWebhook',
  'listWebhooks',
  'getWebhook',
  'updateWebhook',
  'rotateWebhookSecret',
  'testWebhook',
  'listWebhookDeliveries',
  'redeliverWebhookDelivery',
  'deleteAttachment',
  'deleteTask',
  'deleteWebhook',
];
/** Operations whose examples are not sent, each with the reason. */
const LEFT_OUT: Record<string, string> = {
  streamChanges:
    'an event stream does not end on its own, and a whole response is what this file checks; tests/changes/stream.test.ts sends it, and its example is the same Change as listChanges',
};

/** The token /metrics wants when METRICS_TOKEN is set, as in production (the contract's `security: []` cannot say so). */
const METRICS_TOKEN = randomBytes(24).toString('base64url');

let server: TestServer;
const user = newUser();
/** The real value for each path parameter, by name. */
const ids: Record<string, string> = {};
/**
 * Values whose example cannot be real (a refresh token; a change token, signed for one user with
 * the deployment's key), by name: the latest the server issued.
 */
const issued: Record<string, string> = {};

/** The one example every path parameter called `name` has (they must agree, or no fixture fits them all). */
function examplePathId(name: string): string {
  const values = new Set(
    operations.flatMap(({ parameters }) =>
      parameters.filter((p) => p.in === 'path' && p.name === name).map((p) => exampleOf(p)),
    ),
  );
  expect([...values]).toHaveLength(1);
  return [...values][0] as string;
}

/** A request of the test's own (fixtures, ETags), with every scope. */
async function api(method: string, path: string, init: { json?: unknown; body?: RequestInit['body'] } = {}) {
  const token = await server.tokenFor(user);
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(init.json === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: init.json === undefined ? init.body : JSON.stringify(init.json),
  });
  return { response, body: await response.text() };
}

async function created(method: string, path: string, init: Parameters<typeof api>[2]): Promise<string> {
  const { response, body } = await api(method, path, init);
  if (response.status >= 300) throw new Error(`fixture ${method} ${path} answered ${response.status}: ${body}`);
  return (JSON.parse(body) as { id: string }).id;
}

/** Gives a row made through the API the example's id; nothing refers to it yet. */
async function adopt(table: 'tasks' | 'webhook_endpoints', id: string, example: string): Promise<string> {
  const result = await sql`update ${sql.table(table)} set id = ${example} where id = ${id}`.execute(server.database.db);
  expect(result.numAffectedRows).toBe(1n);
  return example;
}

/** Real bytes of a file type: the server sniffs them, so "(the file's bytes)" would be refused. */
function fileOf(nameOrType: string): { bytes: Buffer; type: string } {
  if (/\.png$|^image\/png$|^image\/\*$|^application\/octet-stream$/i.test(nameOrType))
    return { bytes: png(256), type: 'image/png' };
  if (/\.pdf$|^application\/pdf$/i.test(nameOrType)) return { bytes: pdf(256), type: 'application/pdf' };
  if (/\.txt$|^text\/(plain|\*)$/i.test(nameOrType))
    return { bytes: Buffer.from('Renew passport\n'), type: 'text/plain' };
  throw new Error(`no fixture bytes for ${nameOrType}: add them here`);
}

beforeAll(async () => {
  // On PostgreSQL a database of its own: the example ids and the example account are fixed values.
  server = await startServer({ ownDatabase: true, builtinAuth: true, metricsToken: METRICS_TOKEN });
  // No webhook worker runs: deliveries stay pending, and nothing is ever sent anywhere.
  const task = await created('POST', '/api/v1/tasks', { json: { title: 'The task the examples name' } });
  ids.taskId = await adopt('tasks', task, examplePathId('taskId'));
  const webhook = await created('POST', '/api/v1/webhooks', {
    json: { url: 'http://127.0.0.1:9/tasks-api-examples', events: ['task.created'] },
  });
  ids.webhookId = await adopt('webhook_endpoints', webhook, examplePathId('webhookId'));
  ids.deliveryId = await created('POST', `/api/v1/webhooks/${ids.webhookId}/test`, {});
  const form = new FormData();
  const file = fileOf('fixture.png');
  form.append('file', new Blob([file.bytes], { type: file.type }), 'fixture.png');
  ids.attachmentId = await created('POST', `/api/v1/tasks/${ids.taskId}/attachments`, { body: form });
  remember((await api('GET', '/api/v1/changes', {})).body);
});
afterAll(async () => {
  await server?.close();
});

/** The statuses that mean success: the 2xx the operation declares, or its 3xx when it has no 2xx. */
function successes(operation: Operation): number[] {
  const codes = Object.keys(operation.responses).map(Number);
  const ok = codes.filter((code) => code >= 200 && code < 300);
  return ok.length > 0 ? ok : codes.filter((code) => code >= 300 && code < 400);
}

/** The credentials the operation asks for: a token with exactly its scopes, none, or the metrics token. */
async function authorization(planned: Planned): Promise<Record<string, string>> {
  if (planned.operation.operationId === 'getMetrics') return { Authorization: `Bearer ${METRICS_TOKEN}` };
  const security = planned.operation.security ?? (spec.security as Record<string, string[]>[]);
  const requirement = security[0];
  if (requirement === undefined) return {};
  const scopes = requirement.bearerAuth;
  if (scopes === undefined)
    throw new Error(`${planned.operation.operationId}: unknown security ${JSON.stringify(requirement)}`);
  const token = await server.tokenFor(user, scopes.length > 0 ? { scope: scopes.join(' ') } : {});
  return { Authorization: `Bearer ${token}` };
}

/** The resource's current ETag, from a GET of `path` (the task for If-Match, the file for If-Range). */
async function currentETag(path: string): Promise<string> {
  const { response, body } = await api('GET', path);
  const etag = response.headers.get('etag');
  if (response.status !== 200 || etag === null)
    throw new Error(`GET ${path} gave no ETag (${response.status}): ${body}`);
  return etag;
}

/** The request body of the first media type, from its example; binary parts are real bytes. */
function bodyOf(operation: Operation): { body?: RequestInit['body']; contentType?: string } {
  if (operation.requestBody === undefined) return {};
  const [mediaType, media] = Object.entries(deref(operation.requestBody).content as Record<string, Node>)[0]!;
  const schema = deref(media.schema as Node);
  const example = exampleOf(media) ?? (schema.example as unknown);
  if (example === undefined) throw new Error(`${operation.operationId}: no example for ${mediaType}`);
  if (mediaType === 'multipart/form-data') {
    const form = new FormData();
    const fields = example as Record<string, unknown>;
    const filename = typeof fields.filename === 'string' ? fields.filename : 'file';
    for (const [name, value] of Object.entries(fields)) {
      const property = deref((schema.properties as Record<string, Node>)[name]!);
      if (property.format === 'binary') {
        const file = fileOf(filename);
        form.append(name, new Blob([file.bytes], { type: file.type }), filename);
      } else form.append(name, wire(value));
    }
    return { body: form }; // fetch writes the Content-Type with its boundary
  }
  if (/^application\/([\w.-]+\+)?json$/.test(mediaType)) {
    const fields = { ...(example as Record<string, unknown>) };
    for (const name of Object.keys(fields)) if (issued[name] !== undefined) fields[name] = issued[name];
    return { body: JSON.stringify(fields), contentType: mediaType };
  }
  if (schema.format === 'binary') {
    const file = fileOf(mediaType);
    return { body: file.bytes, contentType: mediaType.includes('*') ? file.type : mediaType };
  }
  throw new Error(`${operation.operationId}: no way to send ${mediaType} yet`);
}

/** One whole request from the operation's examples, with the real ids and ETags described above. */
async function requestOf(planned: Planned): Promise<{ url: string; init: RequestInit }> {
  const { operation, parameters } = planned;
  const path = planned.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const id = ids[name];
    if (id === undefined) throw new Error(`${operation.operationId}: no real value for path parameter ${name}`);
    return encodeURIComponent(id);
  });
  const query = new URLSearchParams();
  const headers: Record<string, string> = {};
  for (const parameter of parameters) {
    if (parameter.in === 'path') continue;
    const example = parameter.name === 'since' ? issued.next_token : exampleOrSchemas(parameter);
    if (example === undefined) {
      if (parameter.required) throw new Error(`${operation.operationId}: required ${parameter.name} has no example`);
      continue;
    }
    if (parameter.in === 'query') {
      for (const value of Array.isArray(example) ? example : [example]) query.append(parameter.name, wire(value));
    } else if (parameter.in === 'header') {
      const name = parameter.name.toLowerCase();
      if (name === 'if-none-match') continue; // left out: see the top of this file
      if (name === 'if-match' || name === 'if-range') headers[parameter.name] = await currentETag(path);
      else headers[parameter.name] = wire(example);
    } else throw new Error(`${operation.operationId}: ${parameter.in} parameters are not sent yet`);
  }
  const { body, contentType } = bodyOf(operation);
  if (contentType !== undefined) headers['Content-Type'] = contentType;
  Object.assign(headers, await authorization(planned));
  const search = query.size > 0 ? `?${query.toString()}` : '';
  return { url: `${path}${search}`, init: { method: planned.method.toUpperCase(), headers, body } };
}

/** What a success taught the next requests: the account's latest refresh token. */
function remember(text: string) {
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    if (typeof parsed.refresh_token === 'string') issued.refresh_token = parsed.refresh_token;
    if (typeof parsed.next_token === 'string') issued.next_token = parsed.next_token;
  } catch {
    // not JSON: nothing to remember
  }
}

/** The `Link: <…>; rel="next"` examples of the operation's success responses: each a request to follow. */
function linkExamples(operation: Operation): string[] {
  return Object.entries(operation.responses)
    .filter(([code]) => code.startsWith('2'))
    .flatMap(([, response]) => Object.entries((deref(response).headers ?? {}) as Record<string, Node>))
    .filter(([name]) => name.toLowerCase() === 'link')
    .map(([, header]) => exampleOrSchemas(deref(header)))
    .flatMap((value) => (typeof value === 'string' ? [/^<([^>]+)>; rel="next"$/.exec(value)?.[1] ?? value] : []));
}

describe('the contract examples', () => {
  it('place every operation of the contract: sent in ORDER, or LEFT_OUT with its reason', () => {
    const all = operations.map(({ operation }) => operation.operationId).sort();
    expect([...ORDER, ...Object.keys(LEFT_OUT)].sort()).toEqual(all);
  });

  it.each(ORDER)('of %s make a request that succeeds', async (operationId) => {
    const planned = operations.find(({ operation }) => operation.operationId === operationId);
    if (planned === undefined) throw new Error(`${operationId} is not in the contract: take it out of ORDER`);
    const { url, init } = await requestOf(planned);
    const response = await fetch(`${server.url}${url}`, init);
    const text = await response.text();
    const expected = successes(planned.operation);
    if (!expected.includes(response.status))
      throw new Error(`${init.method} ${url} answered ${response.status}, not ${expected.join(' or ')}: ${text}`);
    remember(text);

    for (const link of linkExamples(planned.operation)) {
      if (!link.startsWith('/')) throw new Error(`${operationId}: its Link example ${link} is not a path`);
      const followed = await fetch(`${server.url}${link}`, { headers: await authorization(planned) });
      const body = await followed.text();
      if (!expected.includes(followed.status))
        throw new Error(`${operationId}'s Link example GET ${link} answered ${followed.status}: ${body}`);
    }
    expect(expected).toContain(response.status);
  });
});
