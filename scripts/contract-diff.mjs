#!/usr/bin/env node
// The breaking-change gate. Compares the released contract (openapi/released/v<major>.json, what
// clients in the wild were given) with the contract in openapi/ as bundled now, prints the
// difference as a changelog (breaking / non-breaking / deprecated / docs) and exits 1 when a change
// would break a client of the release, unless info.version's major is above the released one.
//
//   npm run contract:diff                     released v<major of info.version> → openapi/
//   node scripts/contract-diff.mjs --base a.json --head b.json [--json]
//
// The comparison is api-smart-diff's (it resolves $refs and classifies every change by where it is:
// narrowing what a request may hold breaks clients, narrowing what a response may hold does not).
// On top of it, rules for what it misses or gets wrong here (each one tested in
// tests/scripts/breaking-change-gate.test.ts):
// - webhooks: it does not look into `webhooks:`. Each event is compared as an operation whose
//   *response* is the payload (a receiver reads it as a client reads a response: a field removed
//   or a type widened breaks it, a field added does not), the headers sent as response headers;
//   an event removed is breaking, one added is not; a status the API accepts as the receiver's
//   answer no longer accepted is breaking.
// - a value constraint changed (type, enum, const, required, pattern, format, min/max…): it calls
//   every type change in a request breaking and every one in a response non-breaking, and a
//   `const` or a newly required field in a response breaking. Here what a client sends may widen
//   (`boolean` → `[boolean, null]`, a limit raised) and what it receives may narrow (a `const`
//   added, a field made required); the other way round, or a type replaced by an unrelated one,
//   is breaking.
// - a scope added to an operation's security requirement is breaking (tokens without it get 403);
//   a scope removed is not.
// - a property removed from a closed request body (`additionalProperties: false`, as every
//   request body here is) is breaking: a client that still sends it gets 422.
// - allOf is merged away first (allof-merge, api-smart-diff's own dependency): a schema rewritten
//   as allOf [the old one, something narrower] is compared by what it allows, not by its shape.
// - changes under components/ are dropped (it reports each one again where it is used, which is
//   what a client sees), except security schemes.
//
// A flag a person has judged harmless to clients of the release (a `default` dropped from a
// request field whose server still applies it, say) goes in openapi/released/v<major>.accepted.json
// as { operation, change (the line as printed), reason }: it is then listed apart and does not fail
// the gate. release-contract empties that file when it writes a new release.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { merge as mergeAllOf } from 'allof-merge';
import { apiCompare } from 'api-smart-diff';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const releasedDir = join(root, 'openapi', 'released');

/** The contract in openapi/ bundled into one document, as `npm run generate` bundles it. */
export function bundleContract() {
  const dir = mkdtempSync(join(tmpdir(), 'contract-'));
  try {
    const out = join(dir, 'openapi.json');
    try {
      execFileSync(
        join(root, 'node_modules', '.bin', 'redocly'),
        ['bundle', 'openapi/openapi.yaml', '--output', out, '--ext', 'json'],
        { cwd: root, stdio: 'pipe' },
      );
    } catch (error) {
      process.stderr.write(String(error.stderr ?? '') + String(error.stdout ?? ''));
      throw new Error('redocly bundle openapi/openapi.yaml failed', { cause: error });
    }
    return JSON.parse(readFileSync(out, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const majorOf = (doc) => {
  const match = /^(\d+)\./.exec(String(doc?.info?.version ?? ''));
  if (!match) throw new Error(`info.version ${JSON.stringify(doc?.info?.version)} is not a semantic version`);
  return Number(match[1]);
};

/** The released majors on disk, ascending: openapi/released/v1.json → 1. */
export function releasedMajors(dir = releasedDir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((name) => /^v(\d+)\.json$/.exec(name))
    .filter(Boolean)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** The release a head of major `major` must stay compatible with: v<major>, else the latest before it. */
export function releaseFor(major, dir = releasedDir) {
  const majors = releasedMajors(dir).filter((m) => m <= major);
  if (majors.length === 0) return undefined;
  const m = majors[majors.length - 1];
  return { major: m, file: join(dir, `v${m}.json`) };
}

const WEBHOOK = '/__webhook__/';
const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

// Each webhook event becomes an operation under paths whose response is what the receiver gets.
function webhooksAsOperations(doc) {
  const copy = structuredClone(doc);
  copy.paths = { ...copy.paths };
  for (const [name, item] of Object.entries(copy.webhooks ?? {})) {
    const pseudo = {};
    for (const [method, op] of Object.entries(item ?? {})) {
      if (!METHODS.has(method)) continue;
      const headers = {};
      for (const p of op.parameters ?? []) {
        const param = resolve(doc, p);
        if (param?.in === 'header')
          headers[param.name] = { required: param.required, schema: param.schema, description: param.description };
      }
      const body = resolve(doc, op.requestBody) ?? {};
      pseudo[method] = {
        operationId: op.operationId,
        summary: op.summary,
        description: op.description,
        deprecated: op.deprecated,
        tags: op.tags,
        responses: { 200: { description: body.description ?? 'payload', headers, content: body.content } },
      };
    }
    copy.paths[WEBHOOK + name] = pseudo;
  }
  delete copy.webhooks;
  return copy;
}

function resolve(doc, node, seen = new Set()) {
  if (!node || typeof node !== 'object' || typeof node.$ref !== 'string' || !node.$ref.startsWith('#/')) return node;
  if (seen.has(node.$ref)) return undefined;
  seen.add(node.$ref);
  const target = node.$ref
    .slice(2)
    .split('/')
    .reduce((n, k) => n?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
  return resolve(doc, target, seen);
}

// What the API accepts as a receiver's answer to each webhook (status codes).
function webhookAnswerChanges(base, head) {
  const changes = [];
  for (const [name, item] of Object.entries(base.webhooks ?? {})) {
    for (const [method, op] of Object.entries(item ?? {})) {
      const after = head.webhooks?.[name]?.[method];
      if (!METHODS.has(method) || !after) continue;
      for (const code of Object.keys(op.responses ?? {})) {
        if (!(code in (after.responses ?? {}))) {
          changes.push({
            type: 'breaking',
            action: 'remove',
            path: ['webhooks', name, method, 'responses', code],
            before: op.responses[code],
            text: `answer ${code} from the receiver no longer accepted`,
          });
        }
      }
      for (const code of Object.keys(after.responses ?? {})) {
        if (!(code in (op.responses ?? {}))) {
          changes.push({
            type: 'non-breaking',
            action: 'add',
            path: ['webhooks', name, method, 'responses', code],
            after: after.responses[code],
            text: `answer ${code} from the receiver accepted`,
          });
        }
      }
    }
  }
  return changes;
}

// Where a change is, for the direction rules: what a client sends, or what it receives.
function direction(path) {
  if (path[0] === 'webhooks') return path.includes('responses') ? 'request' : 'response';
  if (path.includes('responses')) return 'response';
  if (path.includes('requestBody') || path.includes('parameters')) return 'request';
  return undefined;
}

const asTypes = (value) => new Set(value === undefined ? ['*'] : Array.isArray(value) ? value : [value]);
// every type allowed by `narrow` is allowed by `wide` ('*': no type keyword, anything)
function typesWithin(narrow, wide) {
  if (wide.has('*')) return true;
  return [...narrow].every((t) => wide.has(t) || (t === 'integer' && wide.has('number')));
}

// The node at `path` in `doc`, following $refs on the way (api-smart-diff's paths go through them).
function at(doc, path) {
  let node = resolve(doc, doc);
  for (const key of path) {
    if (node == null || typeof node !== 'object') return undefined;
    node = resolve(doc, node[key]);
  }
  return node;
}

// Whether a change to a schema keyword lets the schema hold more values ('widen'), fewer
// ('narrow'), or neither or both (undefined: left to api-smart-diff).
const UPPER = new Set(['maxLength', 'maximum', 'exclusiveMaximum', 'maxItems', 'maxProperties']);
const LOWER = new Set(['minLength', 'minimum', 'exclusiveMinimum', 'minItems', 'minProperties']);
function effect(diff, docs) {
  const { path, action, before, after } = diff;
  const last = path[path.length - 1];
  const prev = path[path.length - 2];
  const added = action === 'add';
  const removed = action === 'remove';
  if (last === 'type') {
    const b = asTypes(added ? undefined : before);
    const a = asTypes(removed ? undefined : after);
    return typesWithin(b, a) ? 'widen' : typesWithin(a, b) ? 'narrow' : undefined;
  }
  if (prev === 'type' && typeof last === 'number') return added ? 'widen' : removed ? 'narrow' : undefined;
  if (prev === 'enum' && typeof last === 'number') {
    // a value added to an enum widens it, unless there was no enum before (then it is new: narrower)
    if (added) return Array.isArray(at(docs.before, path.slice(0, -1))) ? 'widen' : 'narrow';
    if (removed) return Array.isArray(at(docs.after, path.slice(0, -1))) ? 'narrow' : 'widen';
    return undefined;
  }
  if (prev === 'required' && typeof last === 'number') return added ? 'narrow' : removed ? 'widen' : undefined;
  if (
    last === 'enum' ||
    last === 'const' ||
    last === 'pattern' ||
    last === 'format' ||
    last === 'multipleOf' ||
    last === 'required'
  ) {
    return added ? 'narrow' : removed ? 'widen' : undefined;
  }
  if (UPPER.has(last) || LOWER.has(last)) {
    if (added) return 'narrow';
    if (removed) return 'widen';
    if (typeof before === 'number' && typeof after === 'number') {
      if (before === after) return undefined;
      return after < before === UPPER.has(last) ? 'narrow' : 'widen';
    }
  }
  return undefined;
}

function reclassify(diff, docs) {
  const { path } = diff;
  // examples are docs wherever they are (the tool leaves those of parameters and headers unclassified)
  if (path.some((k, i) => (k === 'example' || k === 'examples') && path[i - 1] !== 'properties')) return 'annotation';
  const dir = direction(path);
  const last = path[path.length - 1];
  const prev = path[path.length - 2];
  // a value constraint changed: widening is fine in what a client sends, narrowing in what it gets
  if (dir && path.includes('schema')) {
    const e = effect(diff, docs);
    if (e) return (dir === 'request') === (e === 'widen') ? 'non-breaking' : 'breaking';
    if (last === 'type' || prev === 'type') return 'breaking';
  }
  // a scope added to (removed from) a security requirement
  const s = path.lastIndexOf('security');
  if (s >= 0 && path.length === s + 4 && typeof last === 'number') {
    if (diff.action === 'add') return 'breaking';
    if (diff.action === 'remove') return 'non-breaking';
  }
  // a property removed from a closed request body
  if (dir === 'request' && diff.action === 'remove' && prev === 'properties' && path.includes('requestBody')) {
    const parent = at(docs.before, path.slice(0, -2));
    if (parent && parent.additionalProperties === false) return 'breaking';
  }
  return diff.type;
}

/** The changes from `base` to `head`, each { type, action, path, before, after, text, operation }. */
export function compareContracts(base, head) {
  const prepare = (doc) => {
    const problems = [];
    const flat = mergeAllOf(webhooksAsOperations(doc), {
      mergeRefSibling: true,
      onMergeError: (message, path) => problems.push(`${path.join('/')}: ${message}`),
    });
    if (problems.length)
      throw new Error(`allOf that cannot be merged (a schema nothing satisfies):\n${problems.join('\n')}`);
    return flat;
  };
  const docs = { before: prepare(base), after: prepare(head) };
  const { diffs } = apiCompare(docs.before, docs.after);
  const changes = [];
  for (const d of diffs) {
    if (d.path[0] === 'components' && d.path[1] !== 'securitySchemes') continue;
    let path = d.path;
    if (path[0] === 'paths' && String(path[1]).startsWith(WEBHOOK)) {
      // back to where it is in the document: webhooks/<name>/<method>/requestBody/… or …/parameters/<header>
      const [, p, method, ...rest] = path;
      const name = p.slice(WEBHOOK.length);
      if (rest[0] === 'responses' && rest[1] === '200') {
        const tail = rest.slice(2);
        if (tail[0] === 'headers') path = ['webhooks', name, method, 'parameters', ...tail.slice(1)];
        else path = ['webhooks', name, method, 'requestBody', ...tail];
      } else path = ['webhooks', name, ...(method === undefined ? [] : [method]), ...rest];
    }
    const type = reclassify({ ...d, path: d.path }, docs) ?? d.type;
    changes.push({
      type,
      action: d.action,
      path,
      before: d.before,
      after: d.after,
      tool: { type: d.type, description: d.description },
    });
  }
  changes.push(...webhookAnswerChanges(base, head));
  for (const c of changes) Object.assign(c, describe(c, base, head));
  return changes;
}

// ---------------------------------------------------------------------------------------------
// Human-readable lines

const show = (v) =>
  v === undefined ? 'none' : typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v)?.slice(0, 80);
const verb = { add: 'added', remove: 'removed', replace: 'changed', rename: 'renamed' };

function schemaPointer(segments) {
  let name = '';
  let i = 0;
  for (; i < segments.length; i++) {
    const k = segments[i];
    if (k === 'properties' && i + 1 < segments.length) name += (name ? '.' : '') + segments[++i];
    else if (k === 'items') name += '[]';
    else if (k === 'additionalProperties' && i + 1 < segments.length) name += '{*}';
    else if (k === 'allOf' && typeof segments[i + 1] === 'number') i++;
    else if ((k === 'oneOf' || k === 'anyOf') && typeof segments[i + 1] === 'number')
      name += `${name ? ' ' : ''}(${k}[${segments[++i]}])`;
    else break;
  }
  return { name, rest: segments.slice(i) };
}

function what(c, segments, propertyLabel = 'property') {
  const { name, rest } = schemaPointer(segments);
  const subject = name ? `\`${name}\`` : '';
  const v = verb[c.action] ?? c.action;
  if (rest.length === 0) return name ? `${propertyLabel} ${subject} ${v}` : `schema ${v}`;
  const [k] = rest;
  const of = subject ? ` of ${subject}` : '';
  if (k === 'enum' && rest.length === 2) return `enum value ${show(c.action === 'add' ? c.after : c.before)}${of} ${v}`;
  if (k === 'required' && rest.length === 2) {
    const field = c.action === 'add' ? c.after : c.before;
    return c.action === 'add'
      ? `\`${name ? `${name}.` : ''}${field}\` now required`
      : `\`${name ? `${name}.` : ''}${field}\` no longer required`;
  }
  if (k === 'type')
    return rest.length === 2
      ? `type ${show(c.action === 'add' ? c.after : c.before)}${of} ${v}`
      : `type${of}: ${show(c.before)} → ${show(c.after)}`;
  if (rest.length === 1) {
    if (c.action === 'replace') return `${k}${of}: ${show(c.before)} → ${show(c.after)}`;
    return `${k}${of} ${v}${c.action === 'add' ? ` (${show(c.after)})` : c.action === 'remove' ? ` (was ${show(c.before)})` : ''}`;
  }
  return `${rest.join('.')}${of} ${v}`;
}

function describe(c, base, head) {
  if (c.text) return { operation: operationName(c.path), text: c.text };
  const p = c.path;
  const operation = operationName(p);
  const v = verb[c.action] ?? c.action;
  let rest;
  if (p[0] === 'paths' && p.length >= 3) rest = p.slice(3);
  else if (p[0] === 'webhooks' && p.length >= 3) rest = p.slice(3);
  else
    return {
      operation,
      text: `\`${p.join('.')}\` ${v}${c.action === 'replace' ? `: ${show(c.before)} → ${show(c.after)}` : ''}`,
    };
  if (p.length === 2) return { operation, text: `${p[0] === 'webhooks' ? 'event' : 'path'} ${v}` };
  if (rest.length === 0) return { operation, text: `${p[0] === 'webhooks' ? 'event' : 'operation'} ${v}` };
  const [k, ...tail] = rest;
  if (k === 'parameters') {
    if (p[0] === 'webhooks' && typeof tail[0] === 'string') {
      const [header, ...more] = tail;
      return {
        operation,
        text: `header \`${header}\` ${more.length ? `: ${what(c, more.slice(more[0] === 'schema' ? 1 : 0))}` : v}`,
      };
    }
    const doc = c.action === 'add' ? head : base;
    const item = at(doc, p.slice(0, 3));
    const param =
      resolve(doc, item?.parameters?.[tail[0]]) ??
      resolve(
        c.action === 'add' ? base : head,
        at(c.action === 'add' ? base : head, p.slice(0, 3))?.parameters?.[tail[0]],
      );
    const fromTool = /(\w+) parameter `([^`]+)`/.exec(c.tool?.description ?? '');
    const label = fromTool
      ? `${fromTool[1]} parameter \`${fromTool[2]}\``
      : param
        ? `${param.in} parameter \`${param.name}\``
        : `parameter ${tail[0]}`;
    const more = tail.slice(1);
    if (more.length === 0)
      return { operation, text: `${c.action === 'add' && param?.required ? 'required ' : ''}${label} ${v}` };
    if (more[0] === 'required')
      return {
        operation,
        text: `${label} ${c.action === 'remove' || c.after === false ? 'no longer required' : 'now required'}`,
      };
    if (more[0] === 'schema') return { operation, text: `${label}: ${what(c, more.slice(1))}` };
    return { operation, text: `${label}: ${more.join('.')} ${v}` };
  }
  if (k === 'requestBody') {
    const label = p[0] === 'webhooks' ? 'payload' : 'request body';
    if (tail.length === 0) return { operation, text: `${label} ${v}` };
    if (tail[0] === 'required')
      return { operation, text: `${label} ${c.after === true ? 'now required' : 'no longer required'}` };
    if (tail[0] === 'content') {
      const [, mediaType, s, ...schema] = tail;
      const where = `${label} (${mediaType})`;
      if (s === undefined) return { operation, text: `${where} ${v}` };
      if (s === 'schema') return { operation, text: `${where}: ${what(c, schema)}` };
      return { operation, text: `${where}: ${[s, ...schema].join('.')} ${v}` };
    }
    return { operation, text: `${label}: ${tail.join('.')} ${v}` };
  }
  if (k === 'responses') {
    const [code, part, ...more] = tail;
    if (code === undefined) return { operation, text: `responses ${v}` };
    const label = `response ${code}`;
    if (part === undefined) return { operation, text: `${label} ${v}` };
    if (part === 'content') {
      const [mediaType, s, ...schema] = more;
      const where = `${label} (${mediaType})`;
      if (s === undefined) return { operation, text: `${where} ${v}` };
      if (s === 'schema') return { operation, text: `${where}: ${what(c, schema)}` };
      return { operation, text: `${where}: ${[s, ...schema].join('.')} ${v}` };
    }
    if (part === 'headers') {
      const [header, ...h] = more;
      if (header === undefined)
        return {
          operation,
          text: `${label}: headers ${v}${c.action === 'add' && c.after ? ` (${Object.keys(c.after).join(', ')})` : ''}`,
        };
      if (h.length === 0) return { operation, text: `${label}: header \`${header}\` ${v}` };
      return { operation, text: `${label}: header \`${header}\`: ${what(c, h.slice(h[0] === 'schema' ? 1 : 0))}` };
    }
    return { operation, text: `${label}: ${[part, ...more].join('.')} ${v}` };
  }
  if (k === 'security')
    return {
      operation,
      text: `security ${tail.length >= 3 ? `scope ${show(c.action === 'add' ? c.after : c.before)} ${v}` : `requirement ${v}`}`,
    };
  if (rest.length === 1 && c.action === 'replace' && typeof c.before !== 'object')
    return { operation, text: `${k}: ${show(c.before)} → ${show(c.after)}` };
  return { operation, text: `${rest.join('.')} ${v}` };
}

function operationName(p) {
  if (p[0] === 'paths' && p.length >= 2) {
    if (p.length >= 3 && METHODS.has(String(p[2]))) return `${p[2].toUpperCase()} ${p[1]}`;
    return String(p[1]);
  }
  if (p[0] === 'webhooks' && p.length >= 2) return `webhook ${p[1]}`;
  return p[0] === 'components' ? `components.${p[1]}` : String(p[0]);
}

// ---------------------------------------------------------------------------------------------
// Output

const GROUPS = [
  ['breaking', 'Breaking'],
  ['accepted', 'Flagged breaking, accepted after review (see the accepted file)'],
  ['non-breaking', 'Non-breaking'],
  ['deprecated', 'Deprecated'],
  ['unclassified', 'Unclassified (not gated: check by hand)'],
  ['annotation', 'Docs'],
];

/**
 * The changes as changelog sections by kind: one line per change, naming the operations (or
 * webhook events) it is seen in (a shared schema changed shows once, with every place); docs
 * changes summarised per operation as the keywords that changed.
 */
export function formatChangelog(changes) {
  const lines = [];
  const code = (op) => `\`${op}\``;
  for (const [type, title] of GROUPS) {
    const of = changes.filter((c) => c.type === type);
    if (of.length === 0) continue;
    lines.push(`### ${title} (${of.length})`, '');
    if (type === 'annotation') {
      const byOp = new Map();
      for (const c of of) {
        if (!byOp.has(c.operation)) byOp.set(c.operation, new Set());
        byOp.get(c.operation).add(docsLabel(c));
      }
      for (const [op, keywords] of byOp) lines.push(`- ${code(op)}: ${[...keywords].sort().join(', ')}`);
    } else {
      const byText = new Map();
      for (const c of of) {
        const text = type === 'accepted' ? `${c.text} — ${c.reason}` : c.text;
        if (!byText.has(text)) byText.set(text, new Set());
        byText.get(text).add(c.operation);
      }
      for (const [text, ops] of byText) {
        if (ops.size === 1) lines.push(`- ${code([...ops][0])}: ${text}`);
        else lines.push(`- ${text} — in ${ops.size}: ${[...ops].map(code).join(', ')}`);
      }
    }
    lines.push('');
  }
  return lines.join('\n');
}

// docs changes: which keyword changed, not where each copy of it is
function docsLabel(c) {
  const p = c.path.filter((k) => typeof k === 'string');
  const keyword = [...p]
    .reverse()
    .find(
      (k) =>
        [
          'description',
          'summary',
          'example',
          'examples',
          'title',
          'tags',
          'externalDocs',
          'x-internal',
          'operationId',
          'servers',
          'info',
          'contact',
          'license',
          'version',
        ].includes(k) || k.startsWith('x-'),
    );
  return keyword ?? p[p.length - 1] ?? 'docs';
}

/** openapi/released/v<major>.accepted.json next to a release file: breaking flags a person judged harmless. */
export const acceptedFileFor = (releaseFile) => releaseFile.replace(/\.json$/, '.accepted.json');

export function readAccepted(file) {
  if (!file || !existsSync(file)) return [];
  const list = JSON.parse(readFileSync(file, 'utf8')).accepted ?? [];
  for (const a of list) {
    if (
      typeof a.operation !== 'string' ||
      typeof a.change !== 'string' ||
      typeof a.reason !== 'string' ||
      !a.reason.trim()
    ) {
      throw new Error(`${file}: every entry needs operation, change (as the diff prints it) and a reason`);
    }
  }
  return list;
}

/** Marks each breaking change that an entry of `accepted` names (operation and text, exactly) as 'accepted'; returns the entries that named nothing. */
export function applyAccepted(changes, accepted) {
  const used = new Set();
  for (const c of changes) {
    if (c.type !== 'breaking') continue;
    const i = accepted.findIndex((a) => a.operation === c.operation && a.change === c.text);
    if (i >= 0) {
      c.type = 'accepted';
      c.reason = accepted[i].reason;
      used.add(i);
    }
  }
  return accepted.filter((_, i) => !used.has(i));
}

function parseArgs(argv) {
  const args = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--base' || a === '--head') args[a.slice(2)] = argv[++i];
    else if (a === '--json') args.json = true;
    else if (a === '--accepted') args.accepted = argv[++i];
    else if (a === '--help' || a === '-h') args.help = true;
    else
      throw new Error(
        `unknown argument ${a}; usage: contract-diff [--base released.json] [--head contract.json] [--accepted file] [--json]`,
      );
  }
  return args;
}

/**
 * The gate as the command runs it: `argv` its arguments, `log` and `error` its stdout and stderr
 * (lines); resolves to its exit code. Exported for its test, which runs most cases in-process.
 */
export async function runGate(argv, { log = console.log, error = console.error } = {}) {
  const args = parseArgs(argv);
  if (args.help) {
    log('usage: contract-diff [--base released.json] [--head contract.json] [--accepted file] [--json]');
    return 0;
  }
  const read = (file) => JSON.parse(readFileSync(file, 'utf8'));
  const head = args.head ? read(args.head) : bundleContract();
  const headMajor = majorOf(head);
  let baseFile = args.base;
  if (!baseFile) {
    const release = releaseFor(headMajor);
    if (!release) {
      error(
        `no released contract for v${headMajor} or earlier in ${relative(root, releasedDir)}/: run npm run release-contract first`,
      );
      return 2;
    }
    baseFile = release.file;
  }
  const base = read(baseFile);
  const baseMajor = majorOf(base);
  const changes = compareContracts(base, head);
  // reviewed exceptions: only with the released file they were judged against (or named with --accepted)
  const acceptedFile = args.accepted ?? (args.base ? undefined : acceptedFileFor(baseFile));
  const stale = applyAccepted(changes, readAccepted(acceptedFile));
  for (const a of stale)
    error(
      `note: ${relative(process.cwd(), acceptedFile)} accepts a change the diff no longer shows: ${a.operation}: ${a.change}`,
    );
  const breaking = changes.filter((c) => c.type === 'breaking');
  const majorBumped = headMajor > baseMajor;
  const headName = args.head ? relative(process.cwd(), args.head) || args.head : 'openapi/';
  if (args.json) {
    log(
      JSON.stringify(
        {
          base: { file: baseFile, version: base.info?.version },
          head: { file: headName, version: head.info?.version },
          majorBumped,
          changes,
        },
        null,
        2,
      ),
    );
  } else {
    log(
      `Contract diff: ${relative(process.cwd(), baseFile) || baseFile} (${base.info?.version}) → ${headName} (${head.info?.version})\n`,
    );
    log(changes.length ? formatChangelog(changes) : 'No changes.\n');
  }
  if (breaking.length === 0) return 0;
  if (majorBumped) {
    error(
      `${breaking.length} breaking change(s), allowed: info.version ${head.info.version} is a new major over ${base.info?.version}.`,
    );
    return 0;
  }
  error(
    `${breaking.length} breaking change(s) against the released v${baseMajor} contract (${base.info?.version}). ` +
      `Make them additive, or bump info.version's major (${baseMajor + 1}.0.0) and release a v${baseMajor + 1}.`,
  );
  return 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // exitCode, not exit(): a piped stdout (--json) must be written out first
  runGate(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      console.error(error instanceof Error ? error.message : error);
      process.exitCode = 2;
    },
  );
}
