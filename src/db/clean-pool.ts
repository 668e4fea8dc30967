import pg from 'pg';

/** Why a connection was destroyed instead of being given back to the pool. */
export type DiscardReason = 'failed' | 'busy' | 'in_transaction';

/** pg's client as the pool hands it out, with the state this module reads. */
type PoolClient = pg.PoolClient & { readyForQuery?: boolean; getTransactionStatus(): string | null };

type QueryCallback = (error: Error | undefined, result: unknown) => void;

/**
 * Why `client` must not be reused, or undefined when it is clean: no failure other than a
 * PostgreSQL error since it was checked out, no statement still waiting for its reply, and
 * PostgreSQL's last ReadyForQuery said "idle, outside a transaction" ('I').
 */
function discardReasonOf(client: PoolClient, failed: WeakSet<object>): DiscardReason | undefined {
  if (failed.has(client)) return 'failed';
  if (client.readyForQuery !== true) return 'busy';
  if (client.getTransactionStatus() !== 'I') return 'in_transaction';
  return undefined;
}

/**
 * Marks `client` as failed whenever one of its queries fails with anything but a PostgreSQL
 * error (an ErrorResponse, after which the protocol is back in step): a client-side timeout, a
 * socket error, a protocol surprise. After a timeout the statement may still be running, and its
 * reply (the reply to a BEGIN, say) may still arrive; nothing on that connection can be trusted.
 */
function watchFailures(client: PoolClient, failed: WeakSet<object>): void {
  const query = client.query as (...args: unknown[]) => unknown;
  const taint = (error: unknown) => {
    if (error !== undefined && error !== null && !(error instanceof pg.DatabaseError)) failed.add(client);
  };
  const watched = (callback: QueryCallback): QueryCallback => (error, result) => {
    taint(error);
    callback(error, result);
  };
  client.query = function watchedQuery(this: unknown, config: unknown, values?: unknown, callback?: unknown) {
    const submittable = config as { submit?: unknown; callback?: QueryCallback } | null;
    if (typeof submittable?.submit === 'function' && typeof submittable.callback === 'function') submittable.callback = watched(submittable.callback);
    if (typeof values === 'function') values = watched(values as QueryCallback);
    if (typeof callback === 'function') callback = watched(callback as QueryCallback);
    const result = query.call(this, config, values, callback) as Promise<unknown> | undefined;
    result?.then?.(undefined, taint);
    return result;
  } as typeof client.query;
}

/**
 * A pg pool that gives a connection back only clean, and destroys it otherwise.
 *
 * pg-pool reuses any client released without an error, whatever state it is in. After a
 * client-side query timeout that is how acknowledged writes got lost: the reply to a BEGIN
 * arrived after the timeout, the connection went back to the pool inside the transaction the
 * server had opened, and the next requests' statements ran — and were acknowledged — inside it,
 * uncommitted. Here a released client is destroyed (the server then rolls back whatever it had
 * open) when any of its queries failed for a reason other than a PostgreSQL error, when a
 * statement is still waiting for its reply, or when PostgreSQL's last ReadyForQuery did not say
 * idle outside a transaction. `onDiscard` hears of each (for the log).
 */
export class CleanPool extends pg.Pool {
  /** Connections destroyed on release so far, by reason (for the metrics). */
  readonly discarded: Record<DiscardReason, number> = { failed: 0, busy: 0, in_transaction: 0 };
  readonly #failed = new WeakSet<object>();
  readonly #onDiscard: (reason: DiscardReason) => void;

  constructor(config: pg.PoolConfig, onDiscard: (reason: DiscardReason) => void = () => undefined) {
    super(config);
    this.#onDiscard = onDiscard;
    this.on('connect', (client) => watchFailures(client as PoolClient, this.#failed));
  }

  /** Whether `client` is clean as it stands (the owner scope checks after each statement). */
  discardReasonOf(client: pg.PoolClient): DiscardReason | undefined {
    return discardReasonOf(client as PoolClient, this.#failed);
  }

  /** Marks `client` as not to be reused, whatever its state says. */
  taint(client: pg.PoolClient): void {
    this.#failed.add(client);
  }

  // pg-pool's single place where a checked-out client comes back (client.release and pool.query
  // both end here); a truthy `error` (an Error, or `true` as Kysely passes a discarded
  // connection; a clean one gets `false`) makes it destroy the client. Untyped in @types/pg.
  _release(client: PoolClient, idleListener: unknown, error?: Error | boolean): void {
    const reason = error ? undefined : discardReasonOf(client, this.#failed);
    if (reason !== undefined) {
      this.discarded[reason] += 1;
      this.#onDiscard(reason);
    }
    const release = (pg.Pool.prototype as unknown as { _release(c: unknown, l: unknown, e?: Error | boolean): void })._release;
    release.call(this, client, idleListener, reason === undefined ? error : new Error(`connection discarded: ${reason}`));
  }
}
