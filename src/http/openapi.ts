import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as OpenApiValidator from 'express-openapi-validator';
import { Router, type Request, type RequestHandler } from 'express';
import type { Logger } from '../logger.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { bearerSecurityHandler } from '../auth/bearer-security.js';
import { boundedPointer, NoRoute, pointerSegment, ValidationFailed } from '../errors/problem.js';
import { operationIdsOf, type OpenApiDocument } from './contract.js';
import { contractFormats } from './formats.js';
import { toExpress, type HandlerMap, type OperationId } from './handler.js';

/** Fails at boot when the contract's operations and the handler map are not the same set. */
export function assertHandlersMatchSpec(spec: OpenApiDocument, handlers: HandlerMap): void {
  const inSpec = new Set(operationIdsOf(spec));
  const inMap = new Set(Object.keys(handlers));
  const unhandled = [...inSpec].filter((id) => !inMap.has(id));
  const undeclared = [...inMap].filter((id) => !inSpec.has(id));
  if (unhandled.length > 0 || undeclared.length > 0) {
    throw new Error(
      `the handler map does not match the contract: ${[
        unhandled.length > 0 ? `operations without a handler: ${unhandled.join(', ')}` : '',
        undeclared.length > 0 ? `handlers without an operation: ${undeclared.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join('; ')}`,
    );
  }
}

/** The HTTP methods an OpenAPI path item can hold. */
export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/**
 * One Express route per operation of the contract, `/tasks/{taskId}` written `/tasks/:taskId`,
 * each running the handler with that operationId. A plain Router, so the routes the app serves
 * can be listed (tests compare them with the contract). Paths are case-sensitive, as the contract
 * writes them: `/API/V1/AUTH/LOGIN` is no operation (the validator matches paths ignoring case, so
 * such a spelling got past it to a handler, around anything keyed on the path, such as the auth
 * rate limit); what no route takes ends in the same 404 problem as a path the contract lacks.
 * Throws, at boot, when `handlers` and the contract's operations are not the same set.
 */
export function operationsRouter(spec: OpenApiDocument, handlers: HandlerMap): Router {
  assertHandlersMatchSpec(spec, handlers);
  const router = Router({ caseSensitive: true });
  for (const [path, item] of Object.entries(spec.paths)) {
    const expressPath = path.replace(/\{([^}]+)\}/g, ':$1');
    for (const method of METHODS) {
      const operation = item[method] as { operationId: OperationId; parameters?: unknown[] } | undefined;
      if (operation === undefined) continue;
      const known = queryParameterNames(spec, [
        ...((item as { parameters?: unknown[] }).parameters ?? []),
        ...(operation.parameters ?? []),
      ]);
      router[method](
        expressPath,
        onlyKnownQueryParameters(known),
        toExpress(operation.operationId, handlers[operation.operationId] as never),
      );
    }
  }
  router.use((req, _res, next) => {
    delete req.openapi; // the validator's match (which ignored case) describes no operation here
    next(new NoRoute(req.method, req.path));
  });
  return router;
}

/** The names of the query parameters among `parameters` (each inline or a $ref into the components). */
function queryParameterNames(spec: OpenApiDocument, parameters: unknown[]): Set<string> {
  const components =
    (spec as { components?: { parameters?: Record<string, { name: string; in: string }> } }).components?.parameters ??
    {};
  const resolved = parameters.map((p) => {
    const ref = (p as { $ref?: string }).$ref;
    return ref === undefined ? (p as { name: string; in: string }) : components[ref.split('/').pop()!]!;
  });
  return new Set(resolved.filter((p) => p.in === 'query').map((p) => p.name));
}

/**
 * 422 for a query parameter the operation does not declare, read from the raw query string. The
 * validator checks this too, but after its bracket-notation parsing, which drops a key such as
 * `x[y` without a word: the contract says unknown parameters are refused, all of them.
 */
function onlyKnownQueryParameters(known: Set<string>): RequestHandler {
  return (req, _res, next) => {
    const at = req.originalUrl.indexOf('?');
    if (at < 0) return next();
    const unknown = [...new Set(new URLSearchParams(req.originalUrl.slice(at + 1)).keys())].filter(
      (key) => !known.has(key),
    );
    if (unknown.length === 0) return next();
    next(
      new ValidationFailed(
        unknown.map((key) => ({
          in: 'query' as const,
          pointer: boundedPointer(`/${pointerSegment(key)}`),
          detail: 'is not a parameter of this operation',
        })),
      ),
    );
  };
}

/**
 * The contract as the validator is given it: a copy (the validator annotates what it is given;
 * the served document stays pristine), in which a `multipart/form-data` body is any object. The
 * validator never reads such a body (no multer: it would buffer whole uploads), so it cannot see
 * its parts; their handler checks them as they stream in, against the same contract.
 */
function validatorView(spec: OpenApiDocument): OpenApiDocument {
  const view = structuredClone(spec);
  for (const item of Object.values(view.paths)) {
    for (const method of METHODS) {
      const media = (item[method] as { requestBody?: { content?: Record<string, { schema?: unknown }> } } | undefined)
        ?.requestBody?.content?.['multipart/form-data'];
      if (media !== undefined) media.schema = { type: 'object' };
    }
  }
  return view;
}

/**
 * express-openapi-validator (5.6) finds a request's operation by compiling every route template
 * of the contract with path-to-regexp, on every request, until one matches: some 150 µs of CPU
 * per request with our routes. The function is pure, so its results can be kept: this replaces,
 * once, the `pathToRegexp` export of the copy of path-to-regexp the validator loads with one that
 * compiles each (template, options) once. Nothing else changes: the same regexps, matched the
 * same way. Returns the memoised function (a test checks the validator's copy is it).
 */
export function memoiseValidatorRouteCompilation(): (path: string, options?: object) => unknown {
  const require = createRequire(import.meta.url);
  const validatorDir = dirname(require.resolve('express-openapi-validator'));
  const pathToRegexpModule = require(require.resolve('path-to-regexp', { paths: [validatorDir] })) as {
    pathToRegexp: ((path: string, options?: object) => unknown) & { memoised?: true };
  };
  const original = pathToRegexpModule.pathToRegexp;
  if (original.memoised) return original;
  const compiled = new Map<string, unknown>();
  const memoised = Object.assign(
    (path: string, options: object = {}) => {
      if (typeof path !== 'string') return original(path, options); // arrays and tokens: as they were
      const key = `${path}\u0000${JSON.stringify(options)}`;
      let result = compiled.get(key);
      if (result === undefined) {
        result = original(path, options);
        // Route templates only, in practice; a bound all the same.
        if (compiled.size < 10_000) compiled.set(key, result);
      }
      return result;
    },
    { memoised: true as const },
  );
  pathToRegexpModule.pathToRegexp = memoised;
  return memoised;
}

/** A multipart body's boundary parameter as sent (quoted or not), the one parameter its parser needs. */
const BOUNDARY_PARAMETER = /;\s*boundary\s*=\s*("[^"]*"|[^\s;]*)/i;

/**
 * The request's Content-Type as the validator is to see it: the media type alone, and a multipart
 * body's boundary. express-openapi-validator compiles a validator for each (method, route,
 * Content-Type with every parameter but the boundary) it meets and keeps it for the life of the
 * process (its request and response validators both key their caches so). Unchanged, every new
 * parameter (`application/json; x=1`, `x=2`, ...) compiled and kept another: in the test
 * servers, which validate responses too, 250 ms of CPU and 0.5 MB that never came back per
 * request; in production 13 ms, from anyone with a token. Nothing after this reads another
 * parameter: a JSON body was decoded before this stage (the body parser refuses a charset it
 * cannot read), and an upload is typed by its media type and its bytes (attachments/content.ts).
 */
export function canonicalContentType(): RequestHandler {
  return (req, _res, next) => {
    const sent = req.headers['content-type'];
    if (sent !== undefined) {
      const type = sent.split(';', 1)[0]!.trim().toLowerCase();
      const boundary = type.startsWith('multipart/') ? BOUNDARY_PARAMETER.exec(sent)?.[1] : undefined;
      req.headers['content-type'] = boundary === undefined ? type : `${type}; boundary=${boundary}`;
    }
    next();
  };
}

/**
 * The gate in front of the router: express-openapi-validator checks path, query, headers, body and
 * the bearer token (with the operation's scopes) against the contract and answers 404/405 for what
 * the contract lacks; only what passes reaches operationsRouter and an operation's handler. The
 * Content-Type it reads is the canonical one (`canonicalContentType`).
 *
 * The validator itself is one per contract document in a process (`sharedValidator`); the bearer
 * token is verified by this app's verifier, which it finds on the request.
 */
export function contractValidator(options: {
  spec: OpenApiDocument;
  verifier: TokenVerifier;
  logger: Logger;
}): RequestHandler[] {
  const security = bearerSecurityHandler(options.verifier, options.logger);
  const withSecurity: RequestHandler = (req, _res, next) => {
    securityOf.set(req, security);
    next();
  };
  return [canonicalContentType(), withSecurity, ...sharedValidator(options.spec)];
}

type SecurityHandler = ReturnType<typeof bearerSecurityHandler>;
/** The security handler of the app a request came through (`contractValidator`). */
const securityOf = new WeakMap<Request, SecurityHandler>();
const validators = new WeakMap<OpenApiDocument, RequestHandler[]>();

/**
 * express-openapi-validator's middleware for `spec`, made once per document and process. It
 * validates the document, dereferences it and compiles each route's validators as requests reach
 * them, and keeps them: a process serves one app, but an app built twice on the same document
 * (the tests build one per test server) would compile it all again, about a second of CPU per app.
 * Nothing in it belongs to one app: the security handler is looked up on the request, and the
 * path parameters it would install with `app.param` on the first app it meets apply to routes on
 * the app itself, and ours are on operationsRouter's Router.
 */
function sharedValidator(spec: OpenApiDocument): RequestHandler[] {
  const known = validators.get(spec);
  if (known !== undefined) return known;
  memoiseValidatorRouteCompilation();
  const validator = OpenApiValidator.middleware({
    // The validator annotates the document it is given; keep the served copy pristine.
    apiSpec: validatorView(spec) as never,
    validateApiSpec: true,
    // allErrors: one `errors[]` entry per offending field, not just the first, so a form learns
    // every mistake at once. Affordable because the work is linear in the body and the body is
    // bounded: every keyword in the contract is linear (uniqueItems sees its items' type, see
    // Tags.yaml), bodies stop at BODY_LIMIT_BYTES (32 KiB), and the error handler maps and sends
    // at most MAX_FIELD_ERRORS of them. A 32 KiB body of 10,000 wrong-typed tags costs a few ms.
    validateRequests: { allowUnknownQueryParameters: false, removeAdditional: false, allErrors: true },
    // Responses are the handlers' to get right, checked by the tests (tests/helpers/contract-responses.ts)
    // and the contract fuzz: checking them here too would cost every request its throughput.
    validateResponses: false,
    validateFormats: true,
    // Full format checks: 'fast' accepts 2026-13-01 or 02-30 as a date-time, which then fails in
    // the database (a 500) instead of here (a 422).
    ajvFormats: { mode: 'full' },
    // ... and date-time as PostgreSQL can store it and the API can write it back (see formats.ts).
    formats: contractFormats,
    validateSecurity: {
      handlers: { bearerAuth: (req: Request, scopes: string[]) => securityOf.get(req)!(req, scopes) },
    },
    // Never multer: it would read a whole upload into memory (or onto disk) before any handler. Uploads
    // are streamed by their handler (attachments), which checks their parts itself.
    fileUploader: false,
  }) as unknown as RequestHandler[];
  validators.set(spec, validator);
  return validator;
}
