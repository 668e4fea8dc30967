import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { OpenApiDocument } from '../../src/http/contract.js';
import { parseDateTime } from '../../src/http/formats.js';
import { contractHeaders } from './contract-headers.js';

type Node = Record<string, unknown>;

/** ajv-formats' function (CommonJS: the default export's default under ESM). */
export const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv2020,
) => void;

/**
 * Checks values against the contract's schemas as a client would read them: ajv's JSON Schema
 * 2020-12 with full formats, and date-time as this API stores and writes it (formats.ts). The
 * whole document is added once and each schema is compiled on first use as a reference into it,
 * so the components it shares with others are compiled once per checker. Returns
 * `check(key, schema)`: a function giving ajv's first errors as text, or undefined when the value
 * conforms (`key` names the schema, compiled once).
 */
export function schemaChecker(
  spec: OpenApiDocument,
): (key: string, schema: unknown) => (value: unknown) => string | undefined {
  const ajv = new Ajv2020({ strict: false, allErrors: false, unicodeRegExp: true });
  addFormats(ajv);
  ajv.addFormat('date-time', (value: string) => parseDateTime(value) !== undefined);
  ajv.addFormat('password', true);
  ajv.addSchema({ ...(spec as object), $id: 'openapi' });
  const compiled = new Map<string, (value: unknown) => string | undefined>();
  return (key, schema) => {
    let check = compiled.get(key);
    if (check === undefined) {
      const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replace(/"\$ref":"#\//g, '"$ref":"openapi#/')));
      check = (value) => (validate(value) ? undefined : JSON.stringify(validate.errors?.slice(0, 3)));
      compiled.set(key, check);
    }
    return check;
  };
}

/** One response that disagrees with the contract: its headers, its status or its body. */
export interface ResponseMismatch {
  request: string;
  status: number;
  /** Headers sent that the contract does not declare on this response (see contract-headers.ts). */
  undeclared: string[];
  /** Headers the contract declares required on this response that were not sent. */
  missing: string[];
  /** What is wrong with the status or the body, when anything is. */
  body?: string;
}

/** JSON bodies are read up to this size; the largest the API sends (its own contract) is far below it. */
const MAX_CHECKED_BODY = 8 * 1024 * 1024;
const isJson = (type: string) => type === 'application/json' || type.endsWith('+json');

/** What `watchResponses` needs of a contract, made once per document (its schemas compile on first use). */
function responseChecks(spec: OpenApiDocument) {
  const headerMismatch = contractHeaders(spec);
  const check = schemaChecker(spec);
  const templates = Object.keys(spec.paths).map((template) => ({
    template,
    regex: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`),
  }));
  const resolve = (node: unknown): Node => {
    let current = node as Node;
    while (current && typeof current.$ref === 'string') {
      current = current.$ref
        .slice(2)
        .split('/')
        .reduce((at: Node, key) => at[key.replace(/~1/g, '/').replace(/~0/g, '~')] as Node, spec as unknown as Node);
    }
    return current;
  };

  /** What is wrong with `status` and the JSON `body` (undefined: none) of a response to `method template`. */
  const bodyMismatch = (
    method: string,
    template: string,
    status: number,
    mediaType: string,
    body: Buffer | undefined,
  ): string | undefined => {
    const operation = spec.paths[template]![method.toLowerCase()] as { responses?: Node } | undefined;
    if (operation?.responses === undefined) return undefined; // not an operation: the router's 405
    const documented =
      operation.responses[String(status)] ??
      operation.responses[`${String(status)[0]}XX`] ??
      operation.responses.default;
    if (documented === undefined) return `status ${status} is not documented for this operation`;
    if (body === undefined) return undefined;
    const content = resolve(documented).content as Record<string, { schema?: unknown }> | undefined;
    if (content === undefined) return `a ${mediaType} body where the contract documents none`;
    const declared = content[mediaType] ?? content[`${mediaType.split('/')[0]}/*`] ?? content['*/*'];
    if (declared === undefined) return `media type ${mediaType} is not documented (${Object.keys(content).join(', ')})`;
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      return `a ${mediaType} body that is not JSON: ${body.toString('utf8', 0, 200)}`;
    }
    const error = check(`${method} ${template} ${status} ${mediaType}`, declared.schema ?? {})(value);
    return error === undefined ? undefined : `the body breaks the contract: ${error}`;
  };

  return { headerMismatch, templates, bodyMismatch };
}
const checksOf = new WeakMap<OpenApiDocument, ReturnType<typeof responseChecks>>();

/**
 * Watches every response `server` sends to an operation of the contract and records those that
 * disagree with it, as a client would see them:
 * - a header the contract does not declare on that response, or a required one missing;
 * - a status the operation does not document (as status, `NXX` or `default`);
 * - a JSON body of a media type the response does not declare, or one that breaks its schema, or
 *   any JSON body where the response documents none.
 * It reads what the app writes, whichever way it writes it (`res.json`, `res.end`, a stream), so
 * it also covers the answers that never pass through express-openapi-validator. Requests to paths
 * outside the contract are the router's 404s, checked by their own tests. Returns the list it fills.
 */
export function watchResponses(server: Server, spec: OpenApiDocument): ResponseMismatch[] {
  let checks = checksOf.get(spec);
  if (checks === undefined) checksOf.set(spec, (checks = responseChecks(spec)));
  const { headerMismatch, templates, bodyMismatch } = checks;
  const found: ResponseMismatch[] = [];
  // Before the app's own listener, so that a response it ends at once is read too.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    let chunks: Buffer[] | undefined;
    let size = 0;
    let reading: boolean | undefined;
    const keep = (chunk: unknown, encoding: unknown) => {
      if (reading === undefined) {
        const type = String(res.getHeader('content-type') ?? '')
          .split(';')[0]!
          .trim()
          .toLowerCase();
        reading = req.method !== 'HEAD' && isJson(type) && res.getHeader('content-encoding') === undefined;
        if (reading) chunks = [];
      }
      if (!reading || chunk === undefined || chunk === null || typeof chunk === 'function') return;
      const bytes =
        typeof chunk === 'string'
          ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
          : Buffer.from(chunk as Uint8Array); // a copy: the caller may reuse its buffer
      size += bytes.length;
      if (size > MAX_CHECKED_BODY) {
        reading = false;
        chunks = undefined;
      } else chunks!.push(bytes);
    };
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      keep(chunk, rest[0]);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      keep(chunk, rest[0]);
      return end(chunk, ...rest);
    }) as typeof res.end;
    res.once('finish', () => {
      const path = (req.url ?? '/').split('?')[0]!;
      const method = req.method ?? 'GET';
      const match = templates.find((t) => t.regex.test(path));
      if (match === undefined) return;
      const headers = headerMismatch(method, path, res.statusCode, Object.keys(res.getHeaders())) ?? {
        undeclared: [],
        missing: [],
      };
      const mediaType = String(res.getHeader('content-type') ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      // A body too large to read (none is) is checked for its status alone.
      const sent = chunks !== undefined && size > 0 ? Buffer.concat(chunks) : undefined;
      const body = bodyMismatch(method, match.template, res.statusCode, mediaType, sent);
      if (headers.undeclared.length + headers.missing.length > 0 || body !== undefined)
        found.push({ request: `${method} ${path}`, status: res.statusCode, ...headers, body });
    });
  });
  return found;
}
