import type { ErrorRequestHandler, Request } from 'express';
import { authFailureOf } from '../auth/bearer-security.js';
import { isDatabaseUnavailable, isDataException } from '../db/errors.js';
import {
  boundedPointer,
  ClientGone,
  HttpProblem,
  MAX_FIELD_ERRORS,
  MAX_POINTER,
  NoRoute,
  pointerSegment,
  ServiceUnavailable,
  ValidationFailed,
  type FieldError,
} from '../errors/problem.js';
import type { Logger } from '../logger.js';

/** An error as express-openapi-validator and body-parser raise them. */
interface HttpErrorLike extends Error {
  status?: number;
  type?: string;
  headers?: Record<string, string>;
  errors?: { path?: string; message?: string }[];
}

const LOCATIONS: Record<string, FieldError['in']> = {
  body: 'body',
  query: 'query',
  params: 'path',
  path: 'path',
  headers: 'header',
};

/** What a format means here, in place of the validator's bare `must match format "…"`. */
const FORMAT_RULES: Record<string, string> = {
  'must match format "date-time"':
    'must match format "date-time": RFC 3339 with T between date and time, seconds 00-59 and an offset Z or ±hh:mm of at most ±15:59 (the pattern), naming an instant from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z',
};

/** A broken `pattern` in words: the `x-pattern-description` the contract gives beside each pattern. */
export type PatternWords = ReadonlyMap<string, string>;

/** The validator's message for a broken pattern: `must match pattern "<the regular expression>"`. */
const PATTERN_MESSAGE = /^must match pattern "(.*)"$/s;

/** The detail of a field error: a format's rule or a pattern's words in place of a bare regular expression. */
function detailOf(message: string | undefined, words: PatternWords): string {
  if (message === undefined) return 'is invalid';
  const pattern = PATTERN_MESSAGE.exec(message)?.[1];
  if (pattern === undefined) return FORMAT_RULES[message] ?? message;
  const expected = words.get(pattern);
  return expected === undefined ? message : `must be ${expected}`;
}

/** The contract's `maxLength` of a field error's `detail`. */
const MAX_DETAIL = 500;

/**
 * `/body/title` or `.query.limit` (the validator's path) → `{ in: 'body', pointer: '/title' }`.
 * The path may end in a property name as the client sent it (an unknown or missing property), so
 * a stray `~` is escaped, and pointer and detail are cut to the lengths the contract allows.
 */
function fieldError(
  path: string | undefined,
  message: string | undefined,
  words: PatternWords,
  body?: unknown,
): FieldError {
  const raw = (path ?? '').slice(0, 4 * MAX_POINTER);
  const segments = raw.slice(1).split(raw.startsWith('.') ? '.' : '/');
  const where = LOCATIONS[segments[0] ?? ''];
  if (where !== undefined) segments.shift();
  if ((where ?? 'body') === 'body' && message === 'must NOT have additional properties')
    unknownPropertyAsOne(segments, body);
  const pointer = segments.length > 0 && segments[0] !== '' ? `/${segments.join('/')}` : '';
  return {
    in: where ?? 'body',
    pointer: boundedPointer(pointer.replace(/~(?![01])/g, '~0')),
    detail: detailOf(message, words).slice(0, MAX_DETAIL),
  };
}

/**
 * For an unknown property, the validator appends the name as the client sent it to the (escaped)
 * pointer of its object, so a name with `/` in it reads as several segments. Walks the body along
 * the segments while they name objects; what is left is the one property name, escaped as RFC 6901
 * says (`~` → `~0`, `/` → `~1`). Rewrites `segments` in place.
 */
function unknownPropertyAsOne(segments: string[], body: unknown): void {
  let node = body;
  let depth = 0;
  const unescape = (segment: string) => segment.replace(/~1/g, '/').replace(/~0/g, '~');
  while (depth < segments.length - 1) {
    const next =
      node !== null && typeof node === 'object'
        ? (node as Record<string, unknown>)[unescape(segments[depth]!)]
        : undefined;
    if (next === null || typeof next !== 'object') break;
    node = next;
    depth += 1;
  }
  const name = segments.slice(depth).join('/');
  segments.splice(depth, segments.length - depth, pointerSegment(name));
}

/**
 * The validator's errors as field errors: at most {@link MAX_FIELD_ERRORS} of them mapped, all of
 * them counted, so however many rules a body breaks the answer stays small. A repeat of the error
 * just before it (a tag's type is checked twice, see Tags.yaml) is dropped.
 */
function validationFailed(
  errors: { path?: string; message?: string }[],
  body: unknown,
  words: PatternWords,
): ValidationFailed {
  const first: FieldError[] = [];
  let total = 0;
  // A date-time breaks its pattern and its format at once: one error for it, the one that says the rule.
  const formatted = new Set(errors.filter((e) => e.message?.startsWith('must match format')).map((e) => e.path));
  errors.forEach((error, i) => {
    const previous = errors[i - 1];
    if (previous !== undefined && previous.path === error.path && previous.message === error.message) return;
    if (error.message?.startsWith('must match pattern') && formatted.has(error.path)) return;
    total += 1;
    if (first.length < MAX_FIELD_ERRORS) first.push(fieldError(error.path, error.message, words, body));
  });
  return first.length > 0
    ? new ValidationFailed(first, undefined, total)
    : new ValidationFailed([fieldError(undefined, undefined, words)]);
}

/** Turns whatever was thrown into the problem the caller should see. */
function toProblem(error: HttpErrorLike, req: Request, logger: Logger, words: PatternWords): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error;
  if (isDatabaseUnavailable(error)) return new ServiceUnavailable('The database is unavailable; retry later.', error);
  if (isDataException(error)) {
    // The contract should have refused this value before any handler ran: a gap to close.
    logger.warn('database refused a value the contract let through', {
      request_id: req.id,
      sqlstate: (error as { code?: string }).code,
      path: req.path,
    });
    return new ValidationFailed(
      [
        {
          in: 'body',
          pointer: '',
          detail: 'holds a value the database cannot store (out of range or not representable)',
        },
      ],
      'A value in the request cannot be stored.',
    );
  }
  switch (error.type) {
    case 'entity.parse.failed':
      return new HttpProblem(400, 'MALFORMED_BODY', 'Malformed request body', 'The request body is not valid JSON.');
    case 'entity.too.large':
      return new HttpProblem(
        413,
        'PAYLOAD_TOO_LARGE',
        'Payload too large',
        `The request body exceeds ${String((error as { limit?: number }).limit)} bytes.`,
      );
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpProblem(415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type', error.message);
  }
  // The security handler refused the request (401, 403, or 503 when keys cannot be fetched).
  if (req.authFailure) return req.authFailure;
  switch (error.status) {
    case 400:
      return validationFailed(error.errors ?? [], req.body, words);
    case 401:
    case 403:
      // The validator checks the header's presence and scheme itself, before the handler runs.
      return authFailureOf(req, logger);
    case 404:
      return new NoRoute(req.method, req.path);
    case 405: {
      const allow = (error.headers?.Allow ?? '').toUpperCase();
      return new HttpProblem(
        405,
        'METHOD_NOT_ALLOWED',
        'Method not allowed',
        `${req.method} is not allowed on ${req.path}; use ${allow}.`,
        { headers: { Allow: allow } },
      );
    }
    case 413:
      return new HttpProblem(413, 'PAYLOAD_TOO_LARGE', 'Payload too large', 'The request body is too large.');
    case 415:
      return new HttpProblem(
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        'Unsupported media type',
        `Content-Type ${req.get('content-type') ?? '(none)'} is not accepted here.`,
      );
  }
  return undefined;
}

/**
 * The one error handler: every error becomes `application/problem+json`. Known errors say what
 * went wrong; anything else is a 500 that says nothing about internals (no stack, no SQL), only
 * the request id, under which the full error is logged.
 */
export function errorHandler(logger: Logger, words: PatternWords = new Map()): ErrorRequestHandler {
  return (error: HttpErrorLike, req, res, next) => {
    if (error instanceof ClientGone) {
      logger.info('client went away mid-request', { request_id: req.id, path: req.path });
      res.destroy();
      return;
    }
    if (res.headersSent) {
      logger.error('error after response started', { request_id: req.id, error });
      next(error);
      return;
    }
    let problem = toProblem(error, req, logger, words);
    if (problem === undefined) {
      logger.error('unhandled error', { request_id: req.id, error, stack: error?.stack });
      problem = new HttpProblem(
        500,
        'INTERNAL_ERROR',
        'Internal server error',
        'An unexpected error occurred. Quote the request id when reporting it.',
      );
    } else if (problem.code === 'IDEMPOTENCY_KEY_IN_USE') {
      // A duplicate of a request still in flight: a client retrying too eagerly, or a replay.
      // (IdempotencyKeyInUse, by its code: http/ imports no feature, and idempotency/ is one.)
      logger.warn('idempotency conflict', { request_id: req.id, code: problem.code, path: req.path });
    } else if (problem.status === 409) {
      // Any other conflict with the state of a resource (a webhook limit, a disabled webhook, an
      // email already registered): the caller's to resolve, not the server's.
      logger.info('conflict', { request_id: req.id, code: problem.code, path: req.path });
    } else if (problem.status >= 500) {
      const cause: unknown = problem.cause ?? error;
      logger.error(problem.message, { request_id: req.id, code: problem.code, cause: String(cause) });
    }
    res
      .status(problem.status)
      .set(problem.headers)
      .type('application/problem+json')
      .json(problem.toProblem(req.path, req.id));
  };
}
