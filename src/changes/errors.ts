import { HttpProblem, ValidationFailed } from '../errors/problem.js';

/** Where a change token came from: the `since` query parameter or the `Last-Event-ID` header. */
export type TokenSource = 'since' | 'Last-Event-ID';

/** 422: a token this API did not issue to this user (altered, cut short, or another user's). Says no more than that. */
export class InvalidChangeToken extends ValidationFailed {
  constructor(source: TokenSource) {
    super(
      [
        source === 'since'
          ? { in: 'query', pointer: '/since', detail: 'is not a token this API issued to you' }
          : { in: 'header', pointer: '/Last-Event-ID', detail: 'is not a token this API issued to you' },
      ],
      'The change token is not valid: it is not a token this API issued to you.',
    );
  }
}

/**
 * 410: the feed cannot tell what happened after this token: deletions after it were pruned with
 * the history past its retention (or the token is ahead of the history, after a restore).
 */
export class ChangesTokenExpired extends HttpProblem {
  constructor(retentionDays: number) {
    super(
      410,
      'CHANGES_TOKEN_EXPIRED',
      'Changes token expired',
      `This token is older than the ${retentionDays} days of change history kept; list your tasks again and follow the feed from a new token.`,
    );
  }
}
