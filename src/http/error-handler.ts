import type { ErrorRequestHandler, Request } from 'express';
import { authFailureOf } from '../auth/bearer-security.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Logger } from '../logger.js';
import { HttpProblem, ServiceUnavailable, ValidationFailed, type FieldError } from './problem.js';

/** An error as express-openapi-validator and body-parser raise them. */
interface HttpErrorLike extends Error {
  status?: number;
  type?: string;
  headers?: Record<string, string>;
  errors?: { path?: string; message?: string }[];
}

const LOCATIONS: Record<string, FieldError['in']> = { body: 'body', query: 'query', params: 'path', path: 'path', headers: 'header' };

/** `/body/title` or `.body.title` (the validator's path) → `{ in: 'body', pointer: '/title' }`. */
function fieldError(path: string | undefined, message: string | undefined): FieldError {
  const segments = (path ?? '').replace(/^[./]/, '').split(/[./]/);
  const where = LOCATIONS[segments[0] ?? ''];
  if (where !== undefined) segments.shift();
  const pointer = segments.length > 0 && segments[0] !== '' ? `/${segments.join('/')}` : '';
  return {
    in: where ?? 'body',
    pointer,
    detail: (message ?? 'is invalid').slice(0, 500),
  };
}

/** Turns whatever was thrown into the problem the caller should see. */
function toProblem(error: HttpErrorLike, req: Request, logger: Logger): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error;
  if (isDatabaseUnavailable(error)) return new ServiceUnavailable('The database is unavailable; retry later.', error);
  switch (error.type) {
    case 'entity.parse.failed':
      return new HttpProblem(400, 'MALFORMED_BODY', 'Malformed request body', 'The request body is not valid JSON.');
    case 'entity.too.large':
      return new HttpProblem(413, 'PAYLOAD_TOO_LARGE', 'Payload too large', `The request body exceeds ${String((error as { limit?: number }).limit)} bytes.`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpProblem(415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type', error.message);
  }
  // The security handler refused the request (401, 403, or 503 when keys cannot be fetched).
  if (req.authFailure) return req.authFailure;
  switch (error.status) {
    case 400:
      return new ValidationFailed((error.errors ?? [{}]).map((e) => fieldError(e.path, e.message)));
    case 401:
    case 403:
      // The validator checks the header's presence and scheme itself, before the handler runs.
      return authFailureOf(req, logger);
    case 404:
      return new HttpProblem(404, 'NOT_FOUND', 'Not found', `No route ${req.method} ${req.path}.`);
    case 405: {
      const allow = (error.headers?.Allow ?? '').toUpperCase();
      return new HttpProblem(405, 'METHOD_NOT_ALLOWED', 'Method not allowed', `${req.method} is not allowed on ${req.path}; use ${allow}.`, { headers: { Allow: allow } });
    }
    case 413:
      return new HttpProblem(413, 'PAYLOAD_TOO_LARGE', 'Payload too large', 'The request body is too large.');
    case 415:
      return new HttpProblem(415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type', `Content-Type ${req.get('content-type') ?? '(none)'} is not accepted here.`);
  }
  return undefined;
}

/**
 * The one error handler: every error becomes `application/problem+json`. Known errors say what
 * went wrong; anything else is a 500 that says nothing about internals (no stack, no SQL), only
 * the request id, under which the full error is logged.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error: HttpErrorLike, req, res, next) => {
    if (res.headersSent) {
      logger.error('error after response started', { request_id: req.id, error });
      next(error);
      return;
    }
    let problem = toProblem(error, req, logger);
    if (problem === undefined) {
      logger.error('unhandled error', { request_id: req.id, error, stack: error?.stack });
      problem = new HttpProblem(500, 'INTERNAL_ERROR', 'Internal server error', 'An unexpected error occurred. Quote the request id when reporting it.');
    } else if (problem.status === 409) {
      // A duplicate of a request still in flight: a client retrying too eagerly, or a replay.
      logger.warn('idempotency conflict', { request_id: req.id, code: problem.code, path: req.path });
    } else if (problem.status >= 500) {
      logger.error(problem.message, { request_id: req.id, code: problem.code, cause: String(problem.cause ?? error) });
    }
    res
      .status(problem.status)
      .set(problem.headers)
      .type('application/problem+json')
      .json(problem.toProblem(req.path, req.id));
  };
}
