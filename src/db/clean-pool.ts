import pg from 'pg';
import { isReadyForQuery, onQueryFailure, PoolWithReleaseCheck } from './pg-internals.js';

/** Why a connection was destroyed instead of being given back to the pool. */
export type DiscardReason = 'failed' | 'busy' | 'in_transaction';

/**
 * Why `client` must not be reused, or undefined when it is clean: no failure other than a
 * PostgreSQL error since it was checked out, no statement still waiting for its reply, and
 * PostgreSQL's last ReadyForQuery said "idle, outside a transaction" ('I').
 */
function discardReasonOf(client: pg.PoolClient, failed: WeakSet<object>): DiscardReason | undefined {
  if (failed.has(client)) return 'failed';
  if (!isReadyForQuery(client)) return 'busy';
  if (client.getTransactionStatus() !== 'I') return 'in_transaction';
  return undefined;
}

/**
 * Marks `client` as failed whenever one of its queries fails with anything but a PostgreSQL
 * error (an ErrorResponse, after which the protocol is back in step): a client-side timeout, a
 * socket error, a protocol surprise. After a timeout the statement may still be running, and its
 * reply (the reply to a BEGIN, say) may still arrive; nothing on that connection can be trusted.
 */
function watchFailures(client: pg.PoolClient, failed: WeakSet<object>): void {
  onQueryFailure(client, (error) => {
    if (!(error instanceof pg.DatabaseError)) failed.add(client);
  });
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
 * idle outside a transaction. `onDiscard` hears of each (for the log). What it needs of pg's and
 * pg-pool's internals for this (the release decision, a client's readiness, every query's
 * failure) comes from pg-internals.ts.
 */
export class CleanPool extends PoolWithReleaseCheck {
  /** Connections destroyed on release so far, by reason (for the metrics). */
  readonly discarded: Record<DiscardReason, number> = { failed: 0, busy: 0, in_transaction: 0 };
  readonly #failed = new WeakSet<object>();
  readonly #onDiscard: (reason: DiscardReason) => void;

  constructor(config: pg.PoolConfig, onDiscard: (reason: DiscardReason) => void = () => undefined) {
    super(config);
    this.#onDiscard = onDiscard;
    this.on('connect', (client) => watchFailures(client, this.#failed));
  }

  /** Whether `client` is clean as it stands (the owner scope checks after each statement). */
  discardReasonOf(client: pg.PoolClient): DiscardReason | undefined {
    return discardReasonOf(client, this.#failed);
  }

  /** Marks `client` as not to be reused, whatever its state says. */
  taint(client: pg.PoolClient): void {
    this.#failed.add(client);
  }

  // Every checked-out client coming back (client.release and pool.query alike): a truthy `error`
  // (an Error, or `true` as Kysely passes a discarded connection; a clean one gets `false`)
  // destroys it already; otherwise it is destroyed too unless it is clean.
  protected override releaseError(
    client: pg.PoolClient,
    error: Error | boolean | undefined,
  ): Error | boolean | undefined {
    const reason = error ? undefined : discardReasonOf(client, this.#failed);
    if (reason === undefined) return error;
    this.discarded[reason] += 1;
    this.#onDiscard(reason);
    return new Error(`connection discarded: ${reason}`);
  }
}
