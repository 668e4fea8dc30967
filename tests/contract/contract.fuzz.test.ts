// Property-based fuzzing of the live contract: requests generated from the OpenAPI document
// itself (generated/openapi.json), valid and deliberately broken, sent over HTTP to the real app
// on the real database. Valid requests must get a documented 2xx/3xx/4xx; broken ones a 4xx
// problem+json; nothing may ever be a 5xx; every response — status, media type, body and
// documented headers — is checked against the contract here (the server validates its 2xx bodies
// too). A stateful property runs create → get → patch → list → replace → delete sequences. The
// opposite question too: every request the contract calls valid, made from the schemas alone (no
// knowledge of this server), is accepted — 2xx, or a status the state explains (see "Accepted").
//
// FUZZ_SEED=<n> replays a run, FUZZ_RUNS=<n> sets the broken cases per operation (valid ones are
// half as many, accepted ones a tenth): 100 by default, so a local `npm test` stays quick; CI runs
// 300 on PGlite and 150 on PostgreSQL (.ci/run).
// A failure prints the seed, fast-check's replay path and the request, ready to send with curl.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Ajv2020 } from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { loadContract } from '../../src/http/contract.js';
import { parseDateTime } from '../../src/http/formats.js';
import { contractHeaders } from '../helpers/contract-headers.js';
import { addFormats, schemaChecker } from '../helpers/contract-responses.js';
import { SAMPLE_TYPES, sampleFile } from '../helpers/sample-files.js';
import { startServer, type TestServer } from '../helpers/server.js';

const spec = loadContract().spec as unknown as OpenApi;
const headerMismatch = contractHeaders(loadContract().spec);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;
const isStorableDateTime = (value: string) => parseDateTime(value) !== undefined;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON Schema or OpenAPI node, walked by whatever keys the contract has
type Schema = Record<string, any>;
interface Parameter {
  name: string;
  in: 'query' | 'header' | 'path';
  required?: boolean;
  schema: Schema;
  allowReserved?: boolean;
}
interface Operation {
  operationId: string;
  parameters?: Schema[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, Schema>;
  security?: unknown[];
}
interface OpenApi {
  paths: Record<string, Record<string, unknown> & { parameters?: Schema[] }>;
  components: Record<string, Record<string, Schema>>;
}
interface Sent {
  method: string;
  path: string;
  query: [string, string][];
  headers: Record<string, string>;
  body?: string | Buffer | FormData;
  mustFail?: boolean;
}

/** `#/components/schemas/Task` → the schema it names, however many $refs deep. */
function deref<T = Schema>(node: Schema): T {
  let current = node;
  while (current && typeof current.$ref === 'string') {
    current = current.$ref
      .slice(2)
      .split('/')
      .reduce((at: Schema, key: string) => at[key.replace(/~1/g, '/').replace(/~0/g, '~')], spec as unknown as Schema);
  }
  return current as T;
}

// ---------------------------------------------------------------------------------------------
// Valid values: a fast-check arbitrary for (the subset of) JSON Schema the contract uses.

const dateTime = fc
  .tuple(
    fc.date({ min: new Date('0001-01-02T00:00:00Z'), max: new Date('9999-12-30T00:00:00Z'), noInvalidDate: true }),
    fc.constantFrom('Z', '+00:00', '+05:30', '-08:00', '+14:00', '-15:59'),
  )
  .map(([date, offset]) => {
    const iso = date.toISOString();
    if (offset === 'Z') return iso;
    const minutes = (offset.startsWith('-') ? -1 : 1) * (Number(offset.slice(1, 3)) * 60 + Number(offset.slice(4, 6)));
    const local = new Date(date.getTime() + minutes * 60_000).toISOString();
    return `${local.slice(0, -1)}${offset}`;
  })
  .map((value) => (isStorableDateTime(value) ? value : '2026-12-01T09:00:00.000Z'));

function stringArbitrary(schema: Schema): fc.Arbitrary<string> {
  const min = schema.minLength ?? 0;
  const max = Math.min(schema.maxLength ?? 64, 64);
  if (schema.format === 'uuid') return fc.uuid();
  if (schema.format === 'date-time') return dateTime;
  if (schema.format === 'email')
    return fc.emailAddress().map((e) => (e.length <= (schema.maxLength ?? 254) ? e : 'ada@example.com'));
  const pattern = schema.pattern === undefined ? undefined : new RegExp(schema.pattern, 'u');
  const fits = (s: string) =>
    [...s].length >= min &&
    [...s].length <= (schema.maxLength ?? Infinity) &&
    (pattern === undefined || pattern.test(s));
  // What does not fit (too short for minLength, a pattern missed) becomes the schema's example,
  // which the lint checks against the schema: a filter could loop for ever on a rare fit.
  const fallback =
    typeof schema.example === 'string' && fits(schema.example) ? schema.example : 'x'.repeat(Math.max(min, 1));
  const candidates =
    pattern !== undefined && !schema.pattern.includes('(?')
      ? fc.stringMatching(pattern)
      : fc.oneof(
          fc.string({ unit: 'grapheme', minLength: Math.max(min, 1), maxLength: Math.max(max, 1) }),
          fc.string({ minLength: Math.max(min, 1), maxLength: Math.max(max, 1) }),
        );
  return candidates.map((s) => (fits(s) ? s : fallback));
}

/** How a generator makes the leaves of a schema: strings, and integers without bounds of their own. */
interface Leaves {
  string: (schema: Schema) => fc.Arbitrary<string>;
  integers: { min: number; max: number };
}

/** A fast-check arbitrary for (the subset of) JSON Schema the contract uses, its leaves made by `leaves`. */
function fromSchema(node: Schema, leaves: Leaves): fc.Arbitrary<unknown> {
  const schema = deref(node);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum !== undefined) return fc.constantFrom(...(schema.enum as unknown[]));
  const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type ?? 'object'];
  if (types.length > 1) return fc.oneof(...types.map((type) => fromSchema({ ...schema, type }, leaves)));
  switch (types[0]) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer':
      return fc.integer({ min: schema.minimum ?? leaves.integers.min, max: schema.maximum ?? leaves.integers.max });
    case 'string':
      return leaves.string(schema);
    case 'array': {
      const options = { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 5, 5) };
      const items = fromSchema(schema.items ?? {}, leaves);
      return schema.uniqueItems
        ? fc.uniqueArray(items, { ...options, selector: (v) => JSON.stringify(v) })
        : fc.array(items, options);
    }
    default: {
      const properties = Object.fromEntries(
        Object.entries((schema.properties ?? {}) as Record<string, Schema>).map(([name, child]) => [
          name,
          fromSchema(child, leaves),
        ]),
      );
      return fc.record(properties, { requiredKeys: schema.required ?? [] });
    }
  }
}

/** A valid value as this server takes it (its date-time rules, small integers). */
const valid = (node: Schema) => fromSchema(node, { string: stringArbitrary, integers: { min: -1000, max: 1000 } });

// ---------------------------------------------------------------------------------------------
// Broken values: what an attacker, a buggy client or a fuzzer sends instead.

const hostileValue = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    0,
    -1,
    1e308,
    -0.5,
    2 ** 53,
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x\udfff',
    '\u202e',
    '%00',
    '../../etc/passwd',
    "' or 1=1 --",
    '<script>',
    '{}',
    [],
    {},
    [[[[[]]]]],
    { $ne: 1 },
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ minLength: 300, maxLength: 1200 }),
  fc.integer(),
  fc.double(),
  fc.array(fc.string(), { maxLength: 30 }),
  fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), { maxKeys: 5 }),
);

/** A value aimed at what `node` is: poisoned or oversized text for a string, out of range for a number, … */
function hostileFor(node: Schema): fc.Arbitrary<unknown> {
  const schema = deref(node);
  const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
  const poison = fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff');
  const aimed: fc.Arbitrary<unknown>[] = [];
  if (types.includes('string')) {
    aimed.push(
      fc.tuple(valid({ ...schema, type: 'string' }), poison, fc.nat()).map(([v, c, at]) => {
        const text = String(v);
        const i = at % (text.length + 1);
        return `${text.slice(0, i)}${c}${text.slice(i)}`;
      }),
    );
    // One over the longest. Not for a file's bytes (`format: binary`): its limit is megabytes of
    // upload, which the attachment tests send for real; as a JSON string it is only a slow fuzz.
    if (schema.format !== 'binary')
      aimed.push(fc.string({ minLength: (schema.maxLength ?? 1000) + 1, maxLength: (schema.maxLength ?? 1000) + 40 }));
  }
  if (types.includes('integer'))
    aimed.push(
      fc.constantFrom((schema.maximum ?? 0) + 1, (schema.minimum ?? 0) - 1, 2 ** 31, 1.5, '1', Number.MAX_SAFE_INTEGER),
    );
  if (types.includes('array'))
    aimed.push(
      fc.array(valid(schema.items ?? {}), {
        minLength: (schema.maxItems ?? 20) + 1,
        maxLength: (schema.maxItems ?? 20) + 3,
      }),
      fc.array(hostileFor(schema.items ?? {}), { minLength: 1, maxLength: 3 }),
    );
  return aimed.length > 0
    ? fc.oneof({ arbitrary: fc.oneof(...aimed), weight: 3 }, { arbitrary: hostileValue, weight: 1 })
    : hostileValue;
}

/** A value for `node` with one thing wrong; `invalid` when the contract surely refuses it. */
function broken(node: Schema): fc.Arbitrary<{ value: unknown; invalid: boolean }> {
  const schema = deref(node);
  const base = valid(schema);
  const properties = Object.entries((schema.properties ?? {}) as Record<string, Schema>);
  const required: string[] = schema.required ?? [];
  const mutations: fc.WeightedArbitrary<{ value: unknown; invalid: boolean }>[] = [
    { arbitrary: hostileFor(schema).map((value) => ({ value, invalid: false })), weight: 1 },
  ];
  if ((schema.type ?? 'object') === 'object') {
    // Every request body of the contract is closed (the lint sees to it): an unknown field is refused.
    mutations.push({
      arbitrary: fc.tuple(base, fc.string({ minLength: 1, maxLength: 20 }), hostileValue).map(([v, key, value]) => ({
        value: { ...(v as object), [`x_${key}`]: value },
        invalid: schema.additionalProperties === false,
      })),
      weight: 1,
    });
    if (required.length > 0) {
      mutations.push({
        arbitrary: fc.tuple(base, fc.constantFrom(...required)).map(([v, key]) => {
          const copy = { ...(v as Record<string, unknown>) };
          delete copy[key];
          return { value: copy, invalid: true };
        }),
        weight: 1,
      });
    }
    if (properties.length > 0) {
      // One field given a value aimed at its kind: the most telling mutation, so the most frequent.
      const field = fc.oneof(
        ...properties.map(([key, child]) => hostileFor(child).map((value) => [key, value] as const)),
      );
      mutations.push({
        arbitrary: fc
          .tuple(base, field)
          .map(([v, [key, value]]) => ({ value: { ...(v as object), [key]: value }, invalid: false })),
        weight: 4,
      });
    }
  }
  return fc.oneof(...mutations);
}

// ---------------------------------------------------------------------------------------------
// Requests, and what every response must be.

interface OperationCase {
  method: string;
  path: string;
  operation: Operation;
  parameters: Parameter[];
}
const operations: OperationCase[] = Object.entries(spec.paths).flatMap(([path, item]) =>
  METHODS.filter((method) => item[method] !== undefined).map((method) => {
    const operation = item[method] as Operation;
    const parameters = [...(item.parameters ?? []), ...(operation.parameters ?? [])].map((p) => deref<Parameter>(p));
    return { method: method.toUpperCase(), path, operation, parameters };
  }),
);

const checker = schemaChecker(loadContract().spec);

let server: TestServer;
let token: string;
const taskIds: string[] = [];
const counts = { valid: 0, broken: 0, accepted: 0, sequences: 0 };
const curl = (sent: Sent) =>
  `curl -i -X ${sent.method} '${server.url}${sent.path}${sent.query.length ? `?${new URLSearchParams(sent.query).toString()}` : ''}' ${Object.entries(
    sent.headers,
  )
    .map(([k, v]) => `-H ${JSON.stringify(`${k}: ${v}`)}`)
    .join(
      ' ',
    )}${typeof sent.body === 'string' ? ` --data-raw ${JSON.stringify(sent.body)}` : sent.body === undefined ? '' : ' (a binary or multipart body)'}`;

async function send(sent: Sent, to: TestServer = server): Promise<{ status: number; headers: Headers; text: string }> {
  const url = `${to.url}${sent.path}${sent.query.length ? `?${new URLSearchParams(sent.query).toString()}` : ''}`;
  const res = await fetch(url, { method: sent.method, headers: sent.headers, body: sent.body });
  if (res.body !== null && res.headers.get('content-type')?.startsWith('text/event-stream')) {
    // A change stream does not end: its first bytes (`retry:` and the changes after the token) are its answer here.
    const reader = res.body.getReader();
    const first = await reader.read();
    await reader.cancel();
    return { status: res.status, headers: res.headers, text: new TextDecoder().decode(first.value) };
  }
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Everything a response must be, whatever was sent; throws with the request to replay. */
function expectConforming(
  c: OperationCase,
  sent: Sent,
  res: { status: number; headers: Headers; text: string },
  kind: 'valid' | 'broken' | 'accepted',
) {
  const fail = (why: string): never => {
    throw new Error(
      `${why}\n  ${c.method} ${c.path} (${c.operation.operationId}, ${kind}) answered ${res.status}: ${res.text.slice(0, 500)}\n  replay: ${curl(sent)}\n  seed: FUZZ_SEED=${SEED}`,
    );
  };
  if (res.status >= 500) fail('a 5xx');
  if (sent.mustFail && res.status < 400) fail('a request the contract refuses was accepted');
  const documented = c.operation.responses[String(res.status)];
  const response =
    documented === undefined ? fail(`status ${res.status} is not documented for this operation`) : deref(documented);
  const mediaType = res.headers.get('content-type')?.split(';')[0];
  const content = response.content as Record<string, { schema: Schema }> | undefined;
  if (content === undefined) {
    if (res.text !== '') fail('a body where the contract documents none');
  } else {
    const declared =
      content[mediaType ?? ''] ??
      content[`${mediaType?.split('/')[0]}/*`] ??
      content['*/*'] ??
      fail(`media type ${mediaType} is not documented (${Object.keys(content).join(', ')})`);
    const body = mediaType!.endsWith('json') ? JSON.parse(res.text) : res.text;
    const error = checker(`${c.operation.operationId} ${res.status} ${mediaType}`, declared.schema)(body);
    if (error !== undefined) fail(`the body breaks the contract: ${error}`);
  }
  if (res.status >= 400 && mediaType !== 'application/problem+json') fail('an error that is not problem+json');
  // Every pattern a request can break has words in the contract (x-pattern-description): no regex in a detail.
  if (res.status === 422 && res.text.includes('must match pattern'))
    fail('a broken pattern told as a regular expression');
  for (const [name, header] of Object.entries((response.headers ?? {}) as Record<string, Schema>)) {
    const spec = deref(header);
    const value = res.headers.get(name);
    if (value === null) {
      if (spec.required) fail(`required header ${name} is missing`);
      continue;
    }
    const schema = spec.schema ?? {};
    const typed = deref(schema).type === 'integer' ? Number(value) : value;
    const error = checker(`header ${c.operation.operationId} ${res.status} ${name}`, schema)(typed);
    if (error !== undefined)
      fail(`header ${name}: ${JSON.stringify(value).slice(0, 200)} breaks the contract: ${error}`);
  }
  // ... and every header a client may act on is declared on this response, and every one it
  // declares required is there (see contract-headers.ts).
  const mismatch = headerMismatch(c.method, sent.path, res.status, res.headers.keys());
  if (mismatch !== undefined && mismatch.undeclared.length > 0)
    fail(`headers not declared on this response: ${mismatch.undeclared.join(', ')}`);
  if (mismatch !== undefined && mismatch.missing.length > 0)
    fail(`headers declared required on this response but missing: ${mismatch.missing.join(', ')}`);
}

/** A request for `c`: valid parameters and body, or one of them broken. */
/** The parts of one request; `invalid` when the contract surely refuses it. */
interface Parts {
  values: Record<string, unknown>;
  type?: string;
  text?: string;
  id: string;
  extra: [string, string][];
  invalid: boolean;
}

/**
 * A request for `c`: everything valid, or exactly one thing broken (the body, one parameter, an
 * unknown query parameter, the path id), so that what is broken is what the server answers to.
 */
function request(c: OperationCase, kind: 'valid' | 'broken'): fc.Arbitrary<Sent> {
  const params = c.parameters.filter((p) => p.in !== 'path');
  const pathParams = c.parameters.filter((p) => p.in === 'path');
  const validValues = fc.record(
    Object.fromEntries(params.map((p) => [p.name, fc.option(valid(p.schema), { nil: undefined })])),
  );
  const media = c.operation.requestBody ? Object.keys(c.operation.requestBody.content) : [];
  const bodySchema = media.length > 0 ? c.operation.requestBody!.content[media[0]!]!.schema : undefined;
  const rawFile = (type: string) => deref(c.operation.requestBody!.content[type]!.schema ?? {}).format === 'binary';
  /** Whether the operation takes a body of this media type (listed, or within a listed range such as `text/*`). */
  const accepts = (type: string) =>
    media.some((m) => m === type || (m.endsWith('/*') && type.startsWith(m.slice(0, -1))));
  const validBody: fc.Arbitrary<{ type?: string; text?: string }> =
    bodySchema === undefined
      ? fc.constant({})
      : fc
          .tuple(fc.constantFrom(...media), valid(bodySchema))
          .map(([type, value]) => ({ type, text: JSON.stringify(value) }));
  const validId = fc.oneof(fc.constantFrom(...(taskIds.length > 0 ? taskIds : [randomUUID()])), fc.uuid());
  const parts = fc
    .record({ values: validValues, body: validBody, id: validId })
    .map(({ values, body, id }): Parts => ({ values, ...body, id, extra: [], invalid: false }));
  if (kind === 'valid') return parts.map((p) => build(c, p));

  const ways: fc.WeightedArbitrary<Parts>[] = [
    // An unknown query parameter is refused everywhere (allowUnknownQueryParameters is off).
    {
      arbitrary: fc
        .tuple(parts, fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }))
        .map(([p, k, v]) => ({ ...p, extra: [[`x${k}`, v]], invalid: true })),
      weight: 1,
    },
  ];
  if (bodySchema !== undefined) {
    const brokenBody = fc.oneof(
      // Sent as a raw file (a `format: binary` body), any bytes are a file: only its type and size can be wrong.
      {
        arbitrary: fc.tuple(fc.constantFrom(...media), broken(bodySchema)).map(([type, { value, invalid }]) => ({
          type,
          text: JSON.stringify(value) ?? 'null',
          invalid: invalid && !rawFile(type),
        })),
        weight: 5,
      },
      {
        arbitrary: fc.constantFrom(
          { type: 'application/json', text: '{"title":', invalid: true },
          { type: 'application/json', text: '', invalid: false }, // body-parser reads an empty body as {}: a no-op patch
          // Refused where the operation takes no text (an upload takes any text/* file).
          { type: 'text/plain', text: 'title=x', invalid: !accepts('text/plain') },
          { type: 'application/json', text: `{"title":"${'a'.repeat(40_000)}"}`, invalid: true },
          { type: 'application/json', text: '{"title":"a","title":"b"}', invalid: false },
          { type: 'application/json', text: '{"__proto__":{"admin":true},"title":"x"}', invalid: false },
          { type: 'application/json; charset=utf-16', text: '{"title":"x"}', invalid: true },
        ),
        weight: 1,
      },
    );
    ways.push({ arbitrary: fc.tuple(parts, brokenBody).map(([p, b]) => ({ ...p, ...b })), weight: 5 });
  }
  if (params.length > 0) {
    const oneParameter = fc.oneof(...params.map((p) => hostileFor(p.schema).map((value) => [p.name, value] as const)));
    ways.push({
      arbitrary: fc
        .tuple(parts, oneParameter)
        .map(([p, [name, value]]) => ({ ...p, values: { ...p.values, [name]: value } })),
      weight: 3,
    });
  }
  if (pathParams.length > 0) {
    ways.push({
      arbitrary: fc
        .tuple(parts, fc.constantFrom('x', '1', '..', '%00', 'a'.repeat(300), '0b6f3c4e-6a43-4f6e-9a57-2d1f0c3e8b1'))
        .map(([p, id]) => ({ ...p, id, invalid: true })),
      weight: 1,
    });
  }
  return fc.oneof(...ways).map((p) => build(c, p));
}

/** The HTTP request the parts make. */
function build(c: OperationCase, { values, type, text, id, extra, invalid }: Parts): Sent {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  const query: [string, string][] = [...extra];
  const asText = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  for (const p of c.parameters.filter((p) => p.in !== 'path')) {
    const value = values[p.name];
    if (value === undefined) continue;
    if (p.in === 'header') {
      const header = asText(value);
      if (/^[\t\x20-\x7e\x80-\xff]*$/.test(header)) headers[p.name] = header; // what an HTTP client can send at all
    } else if (Array.isArray(value)) for (const item of value) query.push([p.name, asText(item)]);
    else query.push([p.name, asText(value)]);
  }
  if (type !== undefined) headers['Content-Type'] = type;
  const path = c.parameters
    .filter((p) => p.in === 'path')
    .reduce((at, p) => at.replace(`{${p.name}}`, encodeURIComponent(id)), c.path);
  return { method: c.method, path, query, headers, body: text, mustFail: invalid };
}

// ---------------------------------------------------------------------------------------------
// Accepted: every request the contract calls valid is taken. The values come from the schemas
// alone, the way an outside generator makes them (Schemathesis, Prism, a generated client's
// tests): every pattern by its regex, every format by its RFC (ajv-formats, not this server's
// rules), every length, range and enum; binary bodies are real files of each declared media type.
// The only server knowledge is what the contract states in words: the one date-time rule beyond
// its pattern (DueAt.yaml), and cursors and change tokens, which are valid only as the server
// issued them (to this user).

const pure = new Ajv2020({ strict: false, unicodeRegExp: true });
addFormats(pure);
pure.addFormat('password', true);
pure.addFormat('binary', true);
const formatCheckers = new Map<string, (value: string) => boolean>();
const hasFormat = (format: string, value: string) => {
  if (!formatCheckers.has(format)) {
    const validate = pure.compile({ type: 'string', format });
    formatCheckers.set(format, (v) => validate(v));
  }
  return formatCheckers.get(format)!(value);
};
/** DueAt.yaml's rule beyond its pattern: the instant, in UTC, within years 0001–9999. */
const inDocumentedRange = (value: string) => {
  const ms = Date.parse(value.toUpperCase().replace(/(\.\d{3})\d+/, '$1'));
  return ms >= new Date('0001-01-01T00:00:00Z').getTime() && ms <= new Date('9999-12-31T23:59:59.999Z').getTime();
};

function acceptableString(schema: Schema): fc.Arbitrary<string> {
  const min = schema.minLength ?? 0;
  const max = schema.maxLength ?? Infinity;
  const pattern = schema.pattern === undefined ? undefined : new RegExp(schema.pattern, 'u');
  const fits = (s: string) =>
    [...s].length >= min &&
    [...s].length <= max &&
    (pattern === undefined || pattern.test(s)) &&
    (schema.format === undefined || hasFormat(schema.format, s)) &&
    (schema.format !== 'date-time' || inDocumentedRange(s));
  const anyText = () =>
    fc.oneof(
      fc.string({ unit: 'grapheme', minLength: Math.max(min, 1), maxLength: Math.min(max, 64) }),
      fc.string({ minLength: Math.max(min, 1), maxLength: Math.min(max, 64) }),
    );
  let base: fc.Arbitrary<string>;
  try {
    if (schema.format === 'uri')
      base = fc.webUrl({ validSchemes: ['https', 'http'], withQueryParameters: true, withFragments: true });
    else if (pattern !== undefined && !schema.pattern.includes('(?')) base = fc.stringMatching(pattern);
    else if (schema.format === 'date-time') base = rfc3339;
    else if (schema.format === 'uuid') base = fc.uuid();
    else if (schema.format === 'email') base = fc.emailAddress();
    else base = anyText();
  } catch {
    base = anyText(); // a regex feature fast-check cannot generate from (\b)
  }
  // A pattern with lengths (a token of exactly 43 characters) rarely fits what the regex alone
  // makes: such a value becomes the schema's example (checked against the schema by the lint)
  // instead of a filter that could spin for ever.
  const fallback = typeof schema.example === 'string' && fits(schema.example) ? schema.example : undefined;
  if (fallback !== undefined) return base.map((s) => (fits(s) ? s : fallback));
  // Without one, the first of a bounded number of candidates that fits (a filter could spin for ever).
  return fc.array(base, { minLength: 50, maxLength: 50 }).map((candidates) => {
    const found = candidates.find(fits);
    if (found === undefined) throw new Error(`no generated value fits ${JSON.stringify(schema).slice(0, 300)}`);
    return found;
  });
}

/** Any RFC 3339 date-time (§5.6): offsets up to ±23:59, a fraction of any length, `t` and `z` in either case. */
const rfc3339 = fc
  .tuple(
    fc.date({ min: new Date('0001-01-02T00:00:00Z'), max: new Date('9999-12-30T00:00:00Z'), noInvalidDate: true }),
    fc.option(fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))),
    fc.stringMatching(/^(\.[0-9]{1,9})?$/),
    fc.constantFrom('T', 't'),
  )
  .map(([date, offset, fraction, t]) => {
    const two = (n: number) => String(n).padStart(2, '0');
    const minutes = offset === null ? 0 : (offset[0] === '-' ? -1 : 1) * (offset[1] * 60 + offset[2]);
    const local = new Date(date.getTime() + minutes * 60_000).toISOString();
    const zone = offset === null ? 'Z' : `${offset[0]}${two(offset[1])}:${two(offset[2])}`;
    return `${local.slice(0, 10)}${t}${local.slice(11, 19)}${fraction}${zone}`;
  });

/** A valid value as a generator that knows only the contract makes it. */
const acceptable = (node: Schema) =>
  fromSchema(node, { string: acceptableString, integers: { min: -(2 ** 31), max: 2 ** 31 - 1 } });

/**
 * Answers a contract-valid request may get, by the state the server is in, each documented on its
 * operation: a condition (304, 412: an ETag the generator cannot know), a resource the
 * configuration leaves out (404: the built-in issuer off for JWKS, metrics without a token), unknown
 * credentials (401 on login and refresh: a generated password is nobody's), a conflict with what
 * exists (409: an email taken), a range past the end of this file (416), or a limit (429).
 * Never 400, 408, 413, 415, 422 or 431: those say the request itself was wrong.
 */
const STATE_STATUSES: Record<number, (operationId: string) => boolean> = {
  304: () => true,
  401: (id) => ['login', 'refreshToken', 'getMetrics'].includes(id),
  404: (id) => ['getJwks', 'getMetrics'].includes(id),
  409: (id) => id === 'register',
  412: () => true,
  416: (id) => id === 'downloadAttachment',
  429: () => true,
};

/** What a case starts from: a fresh owner with one of each resource, so no case sees another's state. */
interface World {
  token: string;
  ids: Record<string, string>;
}
async function freshWorld(needs: string[]): Promise<World> {
  const owner = await acceptServer.tokenFor();
  const auth = { Authorization: `Bearer ${owner}` };
  const json = { ...auth, 'Content-Type': 'application/json' };
  const post = async (path: string, body: unknown, headers: Record<string, string> = json) => {
    const res = await fetch(`${acceptServer.url}${path}`, {
      method: 'POST',
      headers,
      body: body === undefined || body instanceof Buffer ? body : JSON.stringify(body),
    });
    if (res.status >= 300) throw new Error(`setting up: POST ${path} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as { id: string };
  };
  const ids: Record<string, string> = {};
  if (needs.includes('taskId') || needs.includes('attachmentId'))
    ids.taskId = (await post('/api/v1/tasks', { title: 'accepted' })).id;
  if (needs.includes('attachmentId'))
    ids.attachmentId = (
      await post(`/api/v1/tasks/${ids.taskId}/attachments`, sampleFile('image/png', 1), {
        ...auth,
        'Content-Type': 'image/png',
      })
    ).id;
  if (needs.includes('webhookId')) {
    // Never called: no delivery worker runs in this test.
    ids.webhookId = (
      await post('/api/v1/webhooks', { url: 'https://hooks.example.com/tasks', events: ['task.created'] })
    ).id;
    if (needs.includes('deliveryId'))
      ids.deliveryId = (await post(`/api/v1/webhooks/${ids.webhookId}/test`, undefined, auth)).id;
  }
  return { token: owner, ids };
}

/** A whole request for `c` that the contract calls valid; the ids and the token are filled in per case. */
function acceptedRequest(c: OperationCase): fc.Arbitrary<(world: World) => Sent> {
  // A cursor is valid only as the server issued it (see the cursor parameters): the stateful property follows pages.
  // So is a change token (`since`, `Last-Event-ID`): tests/changes/feed.test.ts follows the feed.
  const params = c.parameters.filter((p) => p.in !== 'path' && !['cursor', 'since', 'Last-Event-ID'].includes(p.name));
  const values = fc.record(
    Object.fromEntries(
      params.map((p) => [
        p.name,
        p.required ? acceptable(p.schema) : fc.option(acceptable(p.schema), { nil: undefined }),
      ]),
    ),
  );
  const content = c.operation.requestBody?.content ?? {};
  const media = Object.keys(content);
  const body: fc.Arbitrary<{ type?: string; body?: string | Buffer | FormData }> =
    media.length === 0
      ? fc.constant({})
      : fc.constantFrom(...media).chain((type): fc.Arbitrary<{ type?: string; body?: string | Buffer | FormData }> => {
          const schema = deref(content[type]!.schema ?? {});
          if (schema.format === 'binary') {
            // A raw file: real bytes of the declared type; `application/octet-stream` is any accepted
            // type's bytes; a range (`text/*`) is any type within it, a made-up one included.
            if (type === 'application/octet-stream')
              return fc
                .tuple(fc.constantFrom(...SAMPLE_TYPES), fc.nat())
                .map(([kind, seed]) => ({ type, body: sampleFile(kind, seed) }));
            if (type.endsWith('/*')) {
              const within = SAMPLE_TYPES.filter((t) => t.startsWith(type.slice(0, -1)));
              return fc.tuple(fc.constantFrom(...within), fc.boolean(), fc.nat()).map(([kind, madeUp, seed]) => ({
                type: madeUp ? `${type.slice(0, -1)}x-${seed % 100}` : kind,
                body: sampleFile(kind, seed),
              }));
            }
            return fc.nat().map((seed) => ({ type, body: sampleFile(type, seed) }));
          }
          if (type === 'multipart/form-data')
            return fc
              .tuple(fc.constantFrom(...SAMPLE_TYPES), fc.nat(), acceptable(schema))
              .map(([kind, seed, fields]) => {
                const form = new FormData();
                const { filename } = fields as { filename?: string };
                form.append('file', new Blob([sampleFile(kind, seed)], { type: kind }), `file-${seed}`);
                if (filename !== undefined) form.append('filename', filename);
                return { body: form }; // fetch writes the multipart Content-Type with its boundary
              });
          return acceptable(schema).map((value) => ({ type, body: JSON.stringify(value) }));
        });
  return fc.tuple(values, body).map(([vals, { type, body: payload }]) => (world: World) => {
    const sent = build(c, { values: vals, type, text: undefined, id: '', extra: [], invalid: false });
    sent.headers.Authorization = `Bearer ${world.token}`;
    sent.path = c.parameters
      .filter((p) => p.in === 'path')
      .reduce((at, p) => at.replace(`{${p.name}}`, world.ids[p.name] ?? randomUUID()), c.path);
    sent.body = payload;
    return sent;
  });
}

let acceptServer: TestServer;
const ACCEPT_RUNS = Math.max(10, Math.round(RUNS / 10));

beforeAll(async () => {
  server = await startServer();
  token = await server.tokenFor();
  for (let i = 0; i < 3; i += 1) {
    const res = await send({
      method: 'POST',
      path: '/api/v1/tasks',
      query: [],
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: `seed ${i}` }),
    });
    taskIds.push((JSON.parse(res.text) as { id: string }).id);
  }
  acceptServer = await startServer({ builtinAuth: true });
  process.stdout.write(`contract fuzz: FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}\n`);
});
afterAll(async () => {
  process.stdout.write(
    `contract fuzz: ${counts.valid} valid and ${counts.broken} broken requests, ${counts.accepted} accepted, ${counts.sequences} stateful sequences, seed ${SEED}\n`,
  );
  await server?.close();
  await acceptServer?.close();
});

/**
 * Cases for an operation: RUNS, but a tenth of them for the documents served whole and unchanged
 * (the contract as JSON or YAML, the 2.7 MB docs page), whose only inputs are headers and query
 * parameters the validator refuses: 300 copies of the docs page took 15 s of the suite's run.
 */
const STATIC_DOCUMENTS = new Set(['getDocs', 'getOpenApiDocument', 'getOpenApiYaml']);
const runsFor = (c: OperationCase) =>
  STATIC_DOCUMENTS.has(c.operation.operationId) ? Math.max(10, Math.round(RUNS / 10)) : RUNS;
/**
 * Valid requests made with this server's own knowledge (its date-time rules) are half as many as
 * broken ones: the accepted property below sends what a generator knowing only the contract makes,
 * a tenth as many (each starts from an owner of its own, with the resources its path names).
 */
const KIND_RUNS = { valid: (c: OperationCase) => Math.max(10, Math.round(runsFor(c) / 2)), broken: runsFor };

describe('the contract, fuzzed', () => {
  for (const kind of ['valid', 'broken'] as const) {
    for (const c of operations)
      it(`${kind} requests to ${c.method} ${c.path} get documented, conforming answers and never a 5xx`, async () => {
        await fc.assert(
          fc.asyncProperty(request(c, kind), async (sent) => {
            counts[kind] += 1;
            expectConforming(c, sent, await send(sent), kind);
          }),
          { seed: SEED, numRuns: KIND_RUNS[kind](c), endOnFailure: true },
        );
      }, 120_000);
  }

  for (const c of operations)
    it(`every request the contract calls valid is accepted: ${c.method} ${c.path}`, async () => {
      await fc.assert(
        fc.asyncProperty(acceptedRequest(c), async (make) => {
          counts.accepted += 1;
          const sent = make(await freshWorld(c.parameters.filter((p) => p.in === 'path').map((p) => p.name)));
          const res = await send(sent, acceptServer);
          expectConforming(c, sent, res, 'accepted');
          if (res.status >= 300 && !STATE_STATUSES[res.status]?.(c.operation.operationId))
            throw new Error(
              `a request the contract calls valid was refused\n  ${c.method} ${c.path} (${c.operation.operationId}) answered ${res.status}: ${res.text.slice(0, 500)}\n  replay: ${curl(sent)}\n  seed: FUZZ_SEED=${SEED}`,
            );
        }),
        {
          seed: SEED,
          numRuns: runsFor(c) === RUNS ? ACCEPT_RUNS : Math.max(3, Math.round(ACCEPT_RUNS / 10)),
          endOnFailure: true,
        },
      );
    }, 120_000);

  it('stateful: create → get → patch → list → replace → delete, in any shape the contract allows', async () => {
    const byId = (id: string) => operations.find((c) => c.operation.operationId === id)!;
    const [create, get, patch, replace, remove, list] = [
      'createTask',
      'getTask',
      'updateTask',
      'replaceTask',
      'deleteTask',
      'listTasks',
    ].map(byId);
    const schemaOf = (c: OperationCase) => Object.values(c.operation.requestBody!.content)[0]!.schema;
    const listQuery = valid({
      type: 'object',
      properties: Object.fromEntries(list!.parameters.map((p) => [p.name, p.schema])),
    });
    await fc.assert(
      fc.asyncProperty(
        valid(schemaOf(create!)),
        valid(schemaOf(patch!)),
        valid(schemaOf(replace!)),
        listQuery,
        async (created, patched, replaced, query) => {
          counts.sequences += 1;
          const owner = await server.tokenFor();
          const headers = { Authorization: `Bearer ${owner}`, 'Content-Type': 'application/json' };
          const step = async (c: OperationCase, sent: Sent, expected: number) => {
            const res = await send(sent);
            expectConforming(c, sent, res, 'valid');
            if (res.status !== expected)
              throw new Error(
                `expected ${expected}, got ${res.status}: ${res.text.slice(0, 300)}\n  replay: ${curl(sent)}\n  seed: FUZZ_SEED=${SEED}`,
              );
            return res.text === '' ? undefined : JSON.parse(res.text);
          };
          const task = await step(
            create!,
            { method: 'POST', path: '/api/v1/tasks', query: [], headers, body: JSON.stringify(created) },
            201,
          );
          const path = `/api/v1/tasks/${task.id}`;
          expect(await step(get!, { method: 'GET', path, query: [], headers, body: undefined }, 200)).toEqual(task);
          const afterPatch = await step(
            patch!,
            { method: 'PATCH', path, query: [], headers, body: JSON.stringify(patched) },
            200,
          );
          for (const [key, value] of Object.entries(patched as Record<string, unknown>)) {
            if (key === 'title') expect(afterPatch.title).toBe((value as string).trim());
            else if (key === 'due_at')
              expect(afterPatch.due_at === null ? null : Date.parse(afterPatch.due_at)).toBe(
                value === null ? null : Date.parse(value as string),
              );
            else expect(afterPatch[key]).toEqual(value);
          }
          const listed = Object.entries(query as Record<string, unknown>).flatMap(([k, v]) =>
            Array.isArray(v) ? v.map((x) => [k, String(x)]) : [[k, String(v)]],
          ) as [string, string][];
          await step(
            list!,
            {
              method: 'GET',
              path: '/api/v1/tasks',
              query: listed.filter(([k]) => k !== 'cursor'),
              headers,
              body: undefined,
            },
            200,
          );
          await step(
            replace!,
            {
              method: 'PUT',
              path,
              query: [],
              headers: { ...headers, 'If-Match': `"${afterPatch.version}"` },
              body: JSON.stringify(replaced),
            },
            200,
          );
          await step(remove!, { method: 'DELETE', path, query: [], headers, body: undefined }, 204);
          await step(get!, { method: 'GET', path, query: [], headers, body: undefined }, 404);
        },
      ),
      { seed: SEED, numRuns: Math.max(10, Math.round(RUNS / 2)), endOnFailure: true },
    );
  }, 120_000);
});
