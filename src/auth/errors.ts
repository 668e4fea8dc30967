import { HttpProblem, ServiceUnavailable } from '../errors/problem.js';

const challenge = (params: Record<string, string>) =>
  [
    'Bearer',
    Object.entries(params)
      .map(([k, v]) => `${k}="${v.replace(/["\\]/g, '')}"`)
      .join(', '),
  ]
    .filter(Boolean)
    .join(' ');

/** 401 without a token: the challenge carries no error code (RFC 6750 §3.1). */
export class MissingToken extends HttpProblem {
  constructor(detail = 'This operation needs a bearer token in the Authorization header.') {
    super(401, 'MISSING_TOKEN', 'Authentication required', detail, { headers: { 'WWW-Authenticate': challenge({}) } });
  }
}

/** 401 for a token that was sent and rejected; `reason` is for the log, `detail` for the caller. */
export class InvalidToken extends HttpProblem {
  constructor(
    detail: string,
    readonly reason: string,
    cause?: unknown,
  ) {
    super(401, 'INVALID_TOKEN', 'Invalid token', detail, {
      headers: { 'WWW-Authenticate': challenge({ error: 'invalid_token', error_description: detail }) },
      cause,
    });
  }
}

/** 403: a valid token without the scope the operation declares. */
export class InsufficientScope extends HttpProblem {
  constructor(readonly missing: string[]) {
    const scope = missing.join(' ');
    super(403, 'INSUFFICIENT_SCOPE', 'Insufficient scope', `This operation needs the ${scope} scope.`, {
      headers: { 'WWW-Authenticate': challenge({ error: 'insufficient_scope', scope }) },
    });
  }
}

/** 503: the keys could not be fetched, so no token can be checked; fail closed. */
export class KeySourceUnavailable extends ServiceUnavailable {
  constructor(
    readonly reason: string,
    cause?: unknown,
  ) {
    super('The token signing keys could not be fetched; retry later.', cause);
  }
}
