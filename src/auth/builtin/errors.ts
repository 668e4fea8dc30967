import { HttpProblem } from '../../errors/problem.js';

/** 404: the built-in issuer is off (AUTH_BUILTIN); the server takes tokens from elsewhere. */
export class BuiltinAuthDisabled extends HttpProblem {
  constructor() {
    super(
      404,
      'BUILTIN_AUTH_DISABLED',
      'Built-in authentication disabled',
      'This server does not issue tokens; sign in with its identity provider.',
    );
  }
}

/** 409: registering an email that already has an account. */
export class EmailTaken extends HttpProblem {
  constructor() {
    super(409, 'EMAIL_TAKEN', 'Email already registered', 'An account with this email already exists.');
  }
}

/** 401 for every failed login, whatever the reason, so it reveals nothing; `reason` is for the log. */
export class InvalidCredentials extends HttpProblem {
  constructor(readonly reason: 'unknown_email' | 'wrong_password' | 'disabled') {
    super(401, 'INVALID_CREDENTIALS', 'Invalid credentials', 'The email or password is wrong.', {
      headers: { 'WWW-Authenticate': 'Bearer' },
    });
  }
}

/** 401 for a refresh token that cannot be used; `reason` is for the log. */
export class InvalidRefreshToken extends HttpProblem {
  constructor(readonly reason: 'unknown' | 'revoked' | 'reused' | 'expired' | 'account_disabled') {
    super(401, 'INVALID_REFRESH_TOKEN', 'Invalid refresh token', 'The refresh token is not valid; log in again.', {
      headers: { 'WWW-Authenticate': 'Bearer' },
    });
  }
}

/** 429: too many failed logins for an email or from an IP in the current window. */
export class LoginThrottled extends HttpProblem {
  constructor(retryAfterSeconds: number) {
    super(
      429,
      'LOGIN_THROTTLED',
      'Too many failed logins',
      `Too many failed logins; retry after ${retryAfterSeconds} seconds.`,
      {
        headers: { 'Retry-After': String(retryAfterSeconds) },
      },
    );
  }
}
