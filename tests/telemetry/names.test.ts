import { describe, expect, it } from '@jest/globals';
import { requestAttributes, routeOf, statementSummary } from '../../src/telemetry/names.js';

describe('span names', () => {
  it('name a statement by its verb and first table, never by what it carries', () => {
    expect(statementSummary('insert into "tasks" ("title", "owner_id") values ($1, $2) returning *')).toBe(
      'INSERT tasks',
    );
    expect(statementSummary('select "id" from "tasks" where "owner_id" = $1 order by "created_at" desc')).toBe(
      'SELECT tasks',
    );
    expect(
      statementSummary(
        'update "webhook_deliveries" as "d" set "claimed_until" = now() from "webhook_endpoints" as "e"',
      ),
    ).toBe('UPDATE webhook_deliveries');
    expect(statementSummary('delete from pgboss.job where id = $1')).toBe('DELETE pgboss.job');
    expect(statementSummary('with next as (select id from t) update "tasks" set x = 1')).toBe('UPDATE tasks');
    expect(statementSummary("select set_config('role', $1, true)")).toBe('SELECT');
    expect(statementSummary('begin')).toBe('BEGIN');
    expect(statementSummary('vacuum tasks')).toBe('SQL');
    expect(statementSummary(undefined)).toBe('SQL');
  });

  it('name a request by the route template the validator matched, and nothing when none did', () => {
    expect(routeOf({ openapi: { openApiRoute: '/api/v1/tasks/{taskId}' } })).toBe('/api/v1/tasks/{taskId}');
    expect(routeOf({ path: '/api/v1/tasks/0b5d3f6e-1c1e-4c55-9d55-3c9ad5f0e2b1' })).toBeUndefined();
  });

  it("put a request's decisions on its span: rate limit, request id, idempotency", () => {
    const headers = { 'idempotency-key': 'k-1' };
    const request = {
      id: 'req-1',
      headers,
      rateLimit: { limit: 600, remaining: 598 },
      openapi: { openApiRoute: '/api/v1/tasks' },
    };
    expect(
      requestAttributes(request, { getHeader: (name) => (name === 'idempotent-replayed' ? 'true' : undefined) }),
    ).toEqual({
      'http.route': '/api/v1/tasks',
      'tasks_api.request_id': 'req-1',
      'tasks_api.rate_limit.limit': 600,
      'tasks_api.rate_limit.remaining': 598,
      'tasks_api.idempotency.key': true,
      'tasks_api.idempotency.replayed': true,
    });
    expect(requestAttributes({ headers: {} }, { getHeader: () => undefined })).toEqual({});
  });
});
