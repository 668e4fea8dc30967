/*
 * The names row-level security is built on, as the running app uses them (db/owner-scope.ts).
 * Migration 0004 created them with literal values of its own: a migration is frozen, so it never
 * imports these, and renaming one here would need a new migration that renames it in the
 * database. tests/db/migration-names.test.ts checks that the two agree.
 */

/** The role every request's transaction runs as (`SET LOCAL ROLE`); it can log in nowhere. */
export const APP_ROLE = 'tasks_api_app';

/** The transaction-local setting that names the request's owner. */
export const OWNER_SETTING = 'tasks_api.owner_id';

/**
 * The transaction-local setting that carries the request's trace context (a W3C `traceparent`)
 * into the webhook deliveries its change writes: `webhook_deliveries.traceparent` defaults to it
 * (migration 0009), so the outbox trigger needs no change. Set only while tracing is on.
 */
export const TRACEPARENT_SETTING = 'tasks_api.traceparent';
