const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03', // admin_shutdown, crash_shutdown, cannot_connect_now
  '08000',
  '08001',
  '08003',
  '08004',
  '08006', // connection exceptions
  '53300', // too_many_connections
  '57014',
  '25P03',
  '57P05', // statement, idle-in-transaction and idle-session timeouts
  '55P03', // lock_not_available
  'CONNECTION_NOT_CLEAN',
]);

/**
 * A statement that ran outside any transaction of ours came back with the connection still
 * inside one: its write is not committed, so it must not be acknowledged. The connection is
 * destroyed (the server rolls back) and the request answers 503.
 */
export class ConnectionNotClean extends Error {
  override name = 'ConnectionNotClean';
  readonly code = 'CONNECTION_NOT_CLEAN';
  constructor(readonly reason: string) {
    super(`the database connection was not clean after a statement (${reason}); its work is not committed`);
  }
}

/** True for errors that mean "the database cannot be reached right now", as opposed to a bad query. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
  if (error instanceof AggregateError) return error.errors.some(isDatabaseUnavailable);
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i.test(
    error.message,
  );
}

/**
 * PostgreSQL's class 22, data exception: a value it cannot store or compute with (out of range,
 * U+0000 in text, a malformed date). The caller's input, not the server's fault: a 422.
 */
export function isDataException(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code);
}
