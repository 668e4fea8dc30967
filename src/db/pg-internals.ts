/**
 * Every use of pg's and pg-pool's internals, in one place: what their documentation does not
 * promise and a patch release may change. Written against pg 8.23.1 and pg-pool 3.14.0, both
 * pinned exactly in package.json for that reason; tests/db/pg-internals.test.ts fails, naming what
 * changed, when the installed versions are others or anything below is no longer there. Before
 * moving either pin, read their source again for each item of this list.
 *
 * pg, lib/query.js — the extended-protocol hooks a Query's client calls (PrecededQuery overrides
 * them to send a statement of ours before the query, in the same message batch):
 * - `Query.prototype.prepare(connection)`: writes Parse (unless `hasBeenParsed`), Bind, Describe,
 *   Execute and Sync for the query; called inside a cork/uncork of the socket, so everything it
 *   and our override write leaves as one batch.
 * - `Query.prototype.hasBeenParsed(connection)`: whether a named query's Parse was already sent.
 * - `Query.prototype.handleDataRow(message)`, `handleCommandComplete(message, connection)`: called
 *   for every DataRow and CommandComplete of the batch, ours included.
 * - the `name`, `text` and `types` fields of a Query, and its `callback` field: the function pg
 *   calls with the result (onQueryFailure wraps it when a Query object is passed to client.query).
 *
 * pg, lib/connection.js — the protocol writer a Query's hooks receive:
 * - `parse({ text, name?, types? })`, `bind({ statement?, values })`, `execute({ portal })`.
 * - `parsedStatements` (name → text, filled by the client on ParseComplete of the batch's named
 *   query) and `submittedNamedStatements` (name → text, Parse sent but not yet confirmed).
 *
 * pg, lib/client.js:
 * - `Client#readyForQuery`: true only between PostgreSQL's ReadyForQuery and the next query sent,
 *   so false means a statement is still waiting for its reply.
 *
 * pg-pool, index.js:
 * - `Pool.prototype._release(client, idleListener, error)`: the single place where a checked-out
 *   client comes back (client.release and pool.query both end there); a truthy `error` makes it
 *   destroy the client instead of keeping it. PoolWithReleaseCheck overrides it.
 *
 * Nothing else of pg is used here beyond its documented API (Pool, Client#query,
 * Client#getTransactionStatus, DatabaseError).
 */
import pg from 'pg';

/** pg's protocol writer, as a Query's hooks receive it (lib/connection.js). */
interface PgConnection {
  parse(message: { text: string; name?: string; types?: unknown }): void;
  bind(message: { statement?: string; values: unknown[] }): void;
  execute(message: { portal: string }): void;
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
}

/** pg.Query's protocol hooks and fields, untyped in @types/pg (lib/query.js). */
interface QueryInternals {
  name?: string;
  text: string;
  types?: unknown;
  prepare(connection: PgConnection): void;
  hasBeenParsed(connection: PgConnection): boolean;
  handleDataRow(message: unknown): void;
  handleCommandComplete(message: unknown, connection: unknown): void;
}
const query = pg.Query.prototype as unknown as QueryInternals;

/** A statement sent ahead of a query: its text, its parameters, and the name it is prepared under on connections that have it. */
export interface Preceding {
  text: string;
  values: unknown[];
  /** When the connection has parsed this name with `text` (see `isPrepared`), it is bound by name; else parsed unnamed in the batch. */
  name: string;
}

/**
 * A pg query preceded, in the same message batch and so in the same implicit transaction, by
 * another statement: Parse/Bind/Execute of `preceding`, then the query's own
 * Bind/Describe/Execute, then one Sync. PostgreSQL runs everything up to a Sync as one
 * transaction, so what `preceding` sets transaction-locally holds for the query and ends with it —
 * one round trip, bound parameters, and nothing left on the connection. The preceding statement's
 * row and completion are not part of the result (it is sent without Describe, so it has no
 * RowDescription: its DataRow and CommandComplete are the first of the batch, and dropped).
 *
 * A named query is parsed (once per connection) before `preceding`, so that the ParseComplete pg
 * sees first is its own: pg records a name as parsed on the first ParseComplete of the batch. The
 * preceding statement is bound by name where the connection has prepared it under that name, else
 * parsed unnamed in the batch; an unnamed query is parsed after it, since each unnamed Parse
 * replaces the previous one.
 */
export class PrecededQuery extends pg.Query {
  #precedingDone = false;
  readonly #preceding: Preceding;

  constructor(
    text: string,
    values: unknown[],
    name: string | undefined,
    preceding: Preceding,
    callback: (error: Error | undefined, result: pg.QueryResult) => void,
  ) {
    super({ text, values, name, queryMode: 'extended' } as pg.QueryConfig, undefined, callback);
    this.#preceding = preceding;
  }

  prepare(connection: PgConnection): void {
    const self = this as unknown as QueryInternals;
    if (self.name !== undefined && !query.hasBeenParsed.call(this, connection)) {
      connection.parse({ text: self.text, name: self.name, types: self.types });
      connection.submittedNamedStatements[self.name] = self.text; // so pg's prepare skips its Parse
    }
    const preceding = this.#preceding;
    if (connection.parsedStatements[preceding.name] === preceding.text) {
      connection.bind({ statement: preceding.name, values: preceding.values });
    } else {
      connection.parse({ text: preceding.text });
      connection.bind({ values: preceding.values });
    }
    connection.execute({ portal: '' });
    query.prepare.call(this, connection);
  }

  handleDataRow(message: unknown): void {
    if (this.#precedingDone) query.handleDataRow.call(this, message);
  }

  handleCommandComplete(message: unknown, connection: unknown): void {
    if (!this.#precedingDone) {
      this.#precedingDone = true;
      return;
    }
    query.handleCommandComplete.call(this, message, connection);
  }
}

/** Whether no statement of `client` is waiting for its reply: PostgreSQL's last message to it was ReadyForQuery. */
export function isReadyForQuery(client: pg.ClientBase): boolean {
  return (client as pg.ClientBase & { readyForQuery?: boolean }).readyForQuery === true;
}

type QueryCallback = (error: Error | undefined, result: unknown) => void;

/**
 * Calls `listener` with the error of every query of `client` that fails, however it was issued:
 * with a callback, as a promise, or as a Query object (pg then calls the object's `callback`
 * field, which is wrapped here). Queries that succeed are not seen.
 */
export function onQueryFailure(client: pg.ClientBase, listener: (error: unknown) => void): void {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be called with `.call(this, …)` by the wrapper that replaces it
  const original = client.query as (...args: unknown[]) => unknown;
  const report = (error: unknown) => {
    if (error !== undefined && error !== null) listener(error);
  };
  const watched =
    (callback: QueryCallback): QueryCallback =>
    (error, result) => {
      report(error);
      callback(error, result);
    };
  client.query = function watchedQuery(this: unknown, config: unknown, values?: unknown, callback?: unknown) {
    const submittable = config as { submit?: unknown; callback?: QueryCallback } | null;
    if (typeof submittable?.submit === 'function' && typeof submittable.callback === 'function')
      submittable.callback = watched(submittable.callback);
    if (typeof values === 'function') values = watched(values as QueryCallback);
    if (typeof callback === 'function') callback = watched(callback as QueryCallback);
    const result = original.call(this, config, values, callback) as Promise<unknown> | undefined;
    result?.then?.(undefined, report);
    return result;
  } as typeof client.query;
}

type Release = (client: pg.PoolClient, idleListener: unknown, error?: Error | boolean) => void;

/**
 * A pg pool that asks `releaseError` what every checked-out client coming back is released with.
 * pg-pool keeps a client released without an error, whatever state it is in, and its public
 * 'release' event cannot change that; its `_release` is where the decision is made. A truthy
 * result (an Error, or `true` as Kysely passes for a discarded connection) destroys the client;
 * `false` or undefined gives it back to the pool.
 */
export class PoolWithReleaseCheck extends pg.Pool {
  /** What `client` is released with; by default the error its user released it with. */
  protected releaseError(_client: pg.PoolClient, error: Error | boolean | undefined): Error | boolean | undefined {
    return error;
  }

  // pg-pool's internal; see the header of this module.
  _release(client: pg.PoolClient, idleListener: unknown, error?: Error | boolean): void {
    const release = (pg.Pool.prototype as unknown as { _release: Release })._release;
    release.call(this, client, idleListener, this.releaseError(client, error));
  }
}
