/**
 * Span names that say what happened without saying to whom: a route template, a statement's verb
 * and table. Never an id, a path as sent, a parameter value or any text a user wrote.
 */

/** The contract's route template a request matched (`/api/v1/tasks/{taskId}`), from the validator; undefined when none did. */
export function routeOf(request: object): string | undefined {
  const route = (request as { openapi?: { openApiRoute?: unknown } }).openapi?.openApiRoute;
  return typeof route === 'string' ? route : undefined;
}

/**
 * What a request's server span gets once its response is done, read from what the stages left on
 * the request: the route template, the request id, the rate limit's decision (`limit`,
 * `remaining`; a 429 says limited), whether an `Idempotency-Key` came and the answer was a replay.
 */
export function requestAttributes(
  request: object,
  response: { getHeader?(name: string): unknown },
): Record<string, string | number | boolean> {
  const req = request as {
    id?: unknown;
    rateLimit?: { limit?: unknown; remaining?: unknown };
    headers?: Record<string, unknown>;
  };
  const attributes: Record<string, string | number | boolean> = {};
  const route = routeOf(request);
  if (route !== undefined) attributes['http.route'] = route;
  if (typeof req.id === 'string') attributes['tasks_api.request_id'] = req.id;
  if (typeof req.rateLimit?.limit === 'number') attributes['tasks_api.rate_limit.limit'] = req.rateLimit.limit;
  if (typeof req.rateLimit?.remaining === 'number')
    attributes['tasks_api.rate_limit.remaining'] = req.rateLimit.remaining;
  if (req.headers?.['idempotency-key'] !== undefined) {
    attributes['tasks_api.idempotency.key'] = true;
    attributes['tasks_api.idempotency.replayed'] = response.getHeader?.('idempotent-replayed') === 'true';
  }
  return attributes;
}

const VERB =
  /^\s*(?:with\b[\s\S]*?\)\s*)?(select|insert|update|delete|merge|begin|commit|rollback|savepoint|release|set|show|lock|notify|listen|copy|create|alter|drop)\b/i;
const TABLE = /\b(?:from|into|update|join)\s+("?[a-z_][\w$]*"?(?:\."?[a-z_][\w$]*"?)?)/i;

/**
 * `SELECT tasks`: the statement's verb and the first table it names (`db.operation.name
 * db.collection.name`, as OpenTelemetry's database conventions name a span); `SQL` when the text
 * starts otherwise. A statement opening with a CTE is named by what follows it.
 */
export function statementSummary(text: string | undefined): string {
  const match = text === undefined ? null : VERB.exec(text);
  if (match === null) return 'SQL';
  const verb = match[1]!.toUpperCase();
  if (!['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE'].includes(verb)) return verb;
  // The table after the verb (a CTE's own tables come before it).
  const table = TABLE.exec(text!.slice(match[0].length - match[1]!.length))?.[1]?.replaceAll('"', '');
  return table === undefined ? verb : `${verb} ${table}`;
}
