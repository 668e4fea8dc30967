#!/usr/bin/env node
// Validates every example in the bundled contract (generated/openapi.json) against its schema:
// schema `example`/`examples` (at any depth: properties, items, allOf, ...), and the
// `example`/`examples` of media types, parameters and headers, `$ref`s resolved (into
// components/examples too). Prints each failure with the JSON pointer of the example and exits 1;
// `npm run check:examples`. Ajv's JSON Schema 2020-12 dialect, as OpenAPI 3.1 uses, with full
// format checks (a date-time such as 2026-02-30 is no example).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = process.argv[2] ?? join(root, 'generated', 'openapi.json');
const doc = JSON.parse(readFileSync(file, 'utf8'));

const addFormats = addFormatsModule.default ?? addFormatsModule;
const ajv = new Ajv2020({ strict: false, allErrors: true, unicodeRegExp: true, validateFormats: true });
addFormats(ajv, { mode: 'full' });
// Formats OpenAPI names that JSON Schema does not define; they constrain nothing.
for (const format of ['password', 'binary', 'byte', 'int32', 'int64', 'float', 'double']) {
  if (!ajv.formats[format]) ajv.addFormat(format, true);
}
ajv.addSchema(doc, 'openapi');

const escape = (key) => String(key).replace(/~/g, '~0').replace(/\//g, '~1');
const pointerOf = (path) => `#/${path.map(escape).join('/')}`;
/** The node a local `$ref` names, however many `$ref`s deep; with the pointer it was found at. */
function resolve(node, path) {
  let current = node;
  let at = path;
  for (
    let depth = 0;
    current && typeof current.$ref === 'string' && current.$ref.startsWith('#/') && depth < 20;
    depth += 1
  ) {
    at = current.$ref
      .slice(2)
      .split('/')
      .map((key) => key.replace(/~1/g, '/').replace(/~0/g, '~'));
    current = at.reduce((node, key) => node?.[key], doc);
  }
  return { node: current, path: at };
}

const validators = new Map();
/** A validator for the schema at `path` of the document, compiled once. */
function validatorAt(path) {
  const key = pointerOf(path);
  if (!validators.has(key)) {
    try {
      validators.set(key, ajv.getSchema(`openapi${key}`) ?? ajv.compile({ $ref: `openapi${key}` }));
    } catch (error) {
      validators.set(key, { error });
    }
  }
  return validators.get(key);
}

const failures = [];
let checked = 0;
function check(value, schemaPath, examplePath) {
  checked += 1;
  const validate = validatorAt(schemaPath);
  if (validate.error) {
    failures.push(
      `${pointerOf(examplePath)}: its schema ${pointerOf(schemaPath)} does not compile: ${validate.error.message}`,
    );
    return;
  }
  if (!validate(value)) {
    const errors = validate.errors
      .slice(0, 5)
      .map(
        (e) =>
          `${e.instancePath || '(root)'} ${e.message}${e.params?.allowedValue !== undefined ? ` (${JSON.stringify(e.params.allowedValue)})` : ''}`,
      );
    failures.push(`${pointerOf(examplePath)} does not match ${pointerOf(schemaPath)}: ${errors.join('; ')}`);
  }
}

/** Keys under which a schema holds subschemas: one, an array of them, or a map of them. */
const ONE = [
  'items',
  'not',
  'additionalProperties',
  'unevaluatedProperties',
  'unevaluatedItems',
  'contains',
  'if',
  'then',
  'else',
  'propertyNames',
  'contentSchema',
];
const MANY = ['allOf', 'anyOf', 'oneOf', 'prefixItems'];
const MAP = ['properties', 'patternProperties', '$defs', 'dependentSchemas'];

const seenSchemas = new Set();
function walkSchema(schema, path) {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return;
  const key = pointerOf(path);
  if (seenSchemas.has(key)) return;
  seenSchemas.add(key);
  if ('example' in schema) check(schema.example, path, [...path, 'example']);
  if (Array.isArray(schema.examples))
    schema.examples.forEach((example, i) => check(example, path, [...path, 'examples', i]));
  for (const k of ONE) if (schema[k] && typeof schema[k] === 'object') walkSchema(schema[k], [...path, k]);
  for (const k of MANY) if (Array.isArray(schema[k])) schema[k].forEach((s, i) => walkSchema(s, [...path, k, i]));
  for (const k of MAP)
    if (schema[k] && typeof schema[k] === 'object')
      for (const [name, s] of Object.entries(schema[k])) walkSchema(s, [...path, k, name]);
}

/** The `example` / `examples` of a media type, parameter or header, against its `schema`. */
function walkHolder(holder, path) {
  const { node, path: at } = resolve(holder, path);
  if (!node || typeof node !== 'object') return;
  if (node.schema === undefined) {
    // A parameter or header by `content` rather than `schema`.
    for (const [type, media] of Object.entries(node.content ?? {})) walkHolder(media, [...at, 'content', type]);
    return;
  }
  const schemaPath = [...at, 'schema'];
  walkSchema(node.schema, schemaPath);
  if ('example' in node) check(node.example, schemaPath, [...at, 'example']);
  for (const [name, example] of Object.entries(node.examples ?? {})) {
    const { node: resolved, path: examplePath } = resolve(example, [...at, 'examples', name]);
    if (resolved && 'value' in resolved) check(resolved.value, schemaPath, [...examplePath, 'value']);
  }
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
function walkOperation(operation, path) {
  (operation.parameters ?? []).forEach((p, i) => walkHolder(p, [...path, 'parameters', i]));
  const body = resolve(operation.requestBody, [...path, 'requestBody']);
  for (const [type, media] of Object.entries(body.node?.content ?? {}))
    walkHolder(media, [...body.path, 'content', type]);
  for (const [status, response] of Object.entries(operation.responses ?? {})) {
    const { node, path: at } = resolve(response, [...path, 'responses', status]);
    for (const [name, header] of Object.entries(node?.headers ?? {})) walkHolder(header, [...at, 'headers', name]);
    for (const [type, media] of Object.entries(node?.content ?? {})) walkHolder(media, [...at, 'content', type]);
  }
}
function walkPathItem(item, path) {
  const { node, path: at } = resolve(item, path);
  (node.parameters ?? []).forEach((p, i) => walkHolder(p, [...at, 'parameters', i]));
  for (const method of METHODS) if (node[method]) walkOperation(node[method], [...at, method]);
}

for (const [name, item] of Object.entries(doc.paths ?? {})) walkPathItem(item, ['paths', name]);
for (const [name, item] of Object.entries(doc.webhooks ?? {})) walkPathItem(item, ['webhooks', name]);
const components = doc.components ?? {};
for (const [name, schema] of Object.entries(components.schemas ?? {}))
  walkSchema(schema, ['components', 'schemas', name]);
for (const [name, parameter] of Object.entries(components.parameters ?? {}))
  walkHolder(parameter, ['components', 'parameters', name]);
for (const [name, header] of Object.entries(components.headers ?? {}))
  walkHolder(header, ['components', 'headers', name]);
for (const [name, response] of Object.entries(components.responses ?? {})) {
  for (const [header, h] of Object.entries(response.headers ?? {}))
    walkHolder(h, ['components', 'responses', name, 'headers', header]);
  for (const [type, media] of Object.entries(response.content ?? {}))
    walkHolder(media, ['components', 'responses', name, 'content', type]);
}
for (const [name, body] of Object.entries(components.requestBodies ?? {})) {
  for (const [type, media] of Object.entries(body.content ?? {}))
    walkHolder(media, ['components', 'requestBodies', name, 'content', type]);
}

// The same example reached twice (a component and an operation using it) is reported once.
const unique = [...new Set(failures)];
if (unique.length > 0) {
  process.stderr.write(
    `${unique.length} example(s) do not match their schema (${checked} checked):\n${unique.map((f) => `  ${f}`).join('\n')}\n`,
  );
  process.exit(1);
}
process.stdout.write(`every example matches its schema (${checked} checked)\n`);
