import type { OpenApiDocument } from '../../src/http/contract.js';

/**
 * Headers the contract does not declare per response, on purpose: transport and framing
 * (Date, Connection, Keep-Alive, Transfer-Encoding, Content-Length, Content-Type: the media type
 * is declared as the response's content), caching negotiation (Vary), helmet's security headers
 * (the same on every response, described once in the guide) and CORS headers (present only for a
 * configured origin, by the CORS protocol's rules). Every other header a response carries is one
 * a client may act on, so the contract must declare it on that response.
 */
export const UNDECLARED_BY_DESIGN = new Set([
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
  // content negotiation: /docs is sent compressed when the client accepts it (Vary says so)
  'content-encoding',
  'content-length',
  'content-type',
  'vary',
  // helmet
  'content-security-policy',
  'cross-origin-opener-policy',
  'cross-origin-resource-policy',
  'cross-origin-embedder-policy',
  'origin-agent-cluster',
  'referrer-policy',
  'strict-transport-security',
  'x-content-type-options',
  'x-dns-prefetch-control',
  'x-download-options',
  'x-frame-options',
  'x-permitted-cross-domain-policies',
  'x-xss-protection',
]);
const isCors = (name: string) => name.startsWith('access-control-');

type Node = Record<string, unknown>;

/** Matches a request path against the contract's path templates (case-sensitive, as routed). */
export function contractHeaders(spec: OpenApiDocument) {
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
  const templates = Object.keys(spec.paths).map((template) => ({
    template,
    regex: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`),
  }));

  /**
   * How the headers of a response to `method path` with `status` disagree with the contract: the
   * ones it does not declare on that response, and the ones it declares `required` that are
   * missing; `undefined` when the contract has no such operation or status (other checks cover
   * those).
   */
  return function mismatch(
    method: string,
    path: string,
    status: number,
    names: Iterable<string>,
  ): { undeclared: string[]; missing: string[] } | undefined {
    const match = templates.find((t) => t.regex.test(path));
    if (match === undefined) return undefined;
    const operation = spec.paths[match.template]![method.toLowerCase()] as
      { responses?: Record<string, unknown> } | undefined;
    const response = operation?.responses?.[String(status)] ?? operation?.responses?.default;
    if (response === undefined) return undefined;
    const headers = Object.entries((resolve(response).headers ?? {}) as Node).map(([name, header]) => ({
      name: name.toLowerCase(),
      required: resolve(header).required === true,
    }));
    const declared = new Set(headers.map((h) => h.name));
    const sent = new Set([...names].map((name) => name.toLowerCase()));
    return {
      undeclared: [...sent].filter((name) => !UNDECLARED_BY_DESIGN.has(name) && !isCors(name) && !declared.has(name)),
      missing: headers.filter((h) => h.required && !isCors(h.name) && !sent.has(h.name)).map((h) => h.name),
    };
  };
}
