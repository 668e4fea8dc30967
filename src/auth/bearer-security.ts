import type { Request } from 'express';
import { HttpProblem } from '../errors/problem.js';
import type { Logger } from '../logger.js';
import type { AuthContext, Scope } from './auth-context.js';
import { InsufficientScope, InvalidToken, KeySourceUnavailable, MissingToken } from './errors.js';
import type { TokenVerifier } from './token-verifier.js';
import { inSpan, tracingOn } from '../telemetry/tracing.js';

/** `Bearer <token>`; the scheme name is case-insensitive (RFC 7235), the token is token68. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;

/** The token of an `Authorization: Bearer <token>` header, or undefined for anything else. */
export const bearerTokenOf = (header: string | undefined): string | undefined =>
  header ? BEARER.exec(header)?.[1] : undefined;

const verified = new WeakMap<Request, { token: string; context: Promise<AuthContext> }>();

/**
 * The verification of `token` for this request, done once however many layers ask (the rate
 * limiter keys on the caller before the validator's security handler runs): the verifier's cache
 * lookup hashes the token, and one hash per request is enough.
 */
export function verifyOnce(req: Request, verifier: TokenVerifier, token: string): Promise<AuthContext> {
  const known = verified.get(req);
  if (known !== undefined && known.token === token) return known.context;
  const context = tracingOn()
    ? inSpan('auth verify token', {}, async (span) => {
        try {
          return await verifier.verify(token);
        } catch (error) {
          span?.setAttribute('tasks_api.auth.failure', error instanceof HttpProblem ? error.code : 'error');
          throw error;
        }
      })
    : verifier.verify(token);
  verified.set(req, { token, context });
  return context;
}

/**
 * The validator's security handler for `bearerAuth`: verifies the token, checks the operation's
 * declared scopes and puts the caller on `req.auth`. The validator keeps only the status of a
 * thrown error, so the full problem is left on `req.authFailure` for the error handler.
 */
export function bearerSecurityHandler(verifier: TokenVerifier, logger: Logger) {
  return async (req: Request, requiredScopes: string[]): Promise<boolean> => {
    try {
      const token = bearerToken(req);
      const auth = await verifyOnce(req, verifier, token);
      const missing = requiredScopes.filter((scope) => !auth.scopes.has(scope as Scope));
      if (missing.length > 0) throw new InsufficientScope(missing);
      req.auth = auth;
      return true;
    } catch (error) {
      if (!(error instanceof HttpProblem))
        throw Object.assign(new Error('security handler failed', { cause: error }), { status: 500 });
      req.authFailure = error;
      logAuthFailure(logger, error, req.id);
      throw error;
    }
  };
}

/**
 * The problem for a request the validator refused with 401/403 without calling the handler: it
 * checks the header's presence and scheme itself, so a missing or non-Bearer header ends there.
 */
export function authFailureOf(req: Request, logger: Logger): HttpProblem {
  try {
    bearerToken(req);
  } catch (error) {
    if (error instanceof HttpProblem) {
      logAuthFailure(logger, error, req.id);
      return error;
    }
  }
  return new InvalidToken('The bearer token was not accepted.', 'unknown');
}

function logAuthFailure(logger: Logger, problem: HttpProblem, requestId: string): void {
  if (problem instanceof KeySourceUnavailable) {
    logger.error('token keys unavailable', {
      request_id: requestId,
      reason: problem.reason,
      error: String(problem.cause),
    });
  } else {
    logger.warn('authentication failed', {
      request_id: requestId,
      code: problem.code,
      reason: problem instanceof InvalidToken ? problem.reason : problem.message,
    });
  }
}

function bearerToken(req: Request): string {
  const header = req.headers.authorization;
  if (header === undefined || header === '') throw new MissingToken();
  // Node keeps only the first of repeated Authorization headers; two credentials are ambiguous.
  if ((req.headersDistinct.authorization?.length ?? 0) > 1) {
    throw new InvalidToken('Send exactly one Authorization header.', 'multiple_authorization_headers');
  }
  const token = bearerTokenOf(header);
  if (token === undefined) throw new InvalidToken('The Authorization header must be "Bearer <token>".', 'not_bearer');
  return token;
}
