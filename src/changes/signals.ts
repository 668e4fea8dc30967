import pg from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import type { Database } from '../db/database.js';
import { CHANGES_CHANNEL } from '../db/roles.js';
import type { Logger } from '../logger.js';

/**
 * Wake-ups for the live streams: "a change of this owner may have committed". Only a hint: the
 * history is the truth, so a stream woken reads the history from its own position, and a missed
 * or extra wake-up costs a late delivery or a read, never a lost or repeated change.
 */
export interface ChangeSignals {
  /** Calls `wake` after each commit that changed one of `owner`'s tasks, in any process; returns the unsubscribe. */
  watch(owner: string, wake: () => void): () => void;
  /** False while wake-ups may be missed (the listening connection is down): streams then poll. */
  reliable(): boolean;
  close(): Promise<void>;
}

/** Backoff of the listening connection's reconnects. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/**
 * How often the listening connection is asked a trivial query, and how long it may take to
 * answer: a connection cut without a word (a partition, a hung server) delivers no notifications
 * and no error either, so silence is taken for a lost connection after at most their sum.
 */
const PING_EVERY_MS = 5000;
const PING_TIMEOUT_MS = 5000;

/**
 * The watchers of each owner, woken by `notify(owner)`; `everyone()` wakes them all (after a
 * reconnect, when notifications may have been missed). Shared by both back ends.
 */
function watchers() {
  const byOwner = new Map<string, Set<() => void>>();
  const run = (wake: () => void) => {
    try {
      wake();
    } catch {
      // a watcher's failure is its own
    }
  };
  return {
    add(owner: string, wake: () => void): () => void {
      let set = byOwner.get(owner);
      if (set === undefined) byOwner.set(owner, (set = new Set()));
      set.add(wake);
      return () => {
        set.delete(wake);
        if (set.size === 0 && byOwner.get(owner) === set) byOwner.delete(owner);
      };
    },
    notify(owner: string) {
      for (const wake of byOwner.get(owner) ?? []) run(wake);
    },
    everyone() {
      for (const set of byOwner.values()) for (const wake of set) run(wake);
    },
  };
}

/**
 * LISTEN on a connection of its own (a pooled one goes back to the pool between statements, and
 * a transaction pooler cannot hold a LISTEN: point `url` at the server itself then). Opened on the
 * first watch and kept; when it drops it is reopened with backoff, and every stream is woken once
 * it is back, since notifications sent meanwhile are lost.
 */
export function postgresSignals(
  url: string,
  logger: Logger,
  { pingEveryMs = PING_EVERY_MS, pingTimeoutMs = PING_TIMEOUT_MS } = {},
): ChangeSignals {
  const owners = watchers();
  let client: pg.Client | undefined;
  let connected = false;
  let closed = false;
  let delay = RECONNECT_MIN_MS;
  let retry: NodeJS.Timeout | undefined;
  let ping: NodeJS.Timeout | undefined;

  const connect = () => {
    if (closed || client !== undefined) return;
    const next = new pg.Client({
      connectionString: url,
      keepAlive: true,
      connectionTimeoutMillis: pingTimeoutMs,
      query_timeout: pingTimeoutMs,
    });
    client = next;
    const lost = (why: string) => {
      if (client !== next) return;
      client = undefined;
      connected = false;
      clearInterval(ping);
      next.removeAllListeners('notification');
      void next.end().catch(() => undefined);
      if (closed) return;
      logger.warn('change notifications connection lost; streams poll until it is back', {
        reason: why,
        retry_ms: delay,
      });
      retry = setTimeout(connect, delay);
      retry.unref();
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    };
    next.on('error', (error) => lost(error.message));
    next.on('end', () => lost('connection ended'));
    next.on('notification', (message) => {
      if (message.channel === CHANGES_CHANNEL && message.payload !== undefined) owners.notify(message.payload);
    });
    next
      .connect()
      .then(() => next.query(`LISTEN ${CHANGES_CHANNEL}`))
      .then(
        () => {
          if (client !== next) return;
          connected = true;
          delay = RECONNECT_MIN_MS;
          owners.everyone();
          ping = setInterval(() => {
            next.query('select 1').catch((error: unknown) => lost(`no answer to a ping: ${String(error)}`));
          }, pingEveryMs);
          ping.unref();
        },
        (error: unknown) => lost(error instanceof Error ? error.message : String(error)),
      );
  };

  return {
    watch(owner, wake) {
      connect();
      return owners.add(owner, wake);
    },
    reliable: () => connected,
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(ping);
      const open = client;
      client = undefined;
      connected = false;
      await open?.end().catch(() => undefined);
    },
  };
}

/** NOTIFY inside embedded PGlite: the one process that has the database hears every commit. */
export function pgliteSignals(pglite: PGlite): ChangeSignals {
  const owners = watchers();
  let listening: Promise<() => Promise<void>> | undefined;
  return {
    watch(owner, wake) {
      listening ??= pglite.listen(CHANGES_CHANNEL, (payload) => owners.notify(payload));
      return owners.add(owner, wake);
    },
    reliable: () => true,
    async close() {
      const unlisten = await listening?.catch(() => undefined);
      await unlisten?.().catch(() => undefined);
    },
  };
}

/** No wake-ups at all: streams read the history at every heartbeat. */
const noSignals: ChangeSignals = { watch: () => () => undefined, reliable: () => false, close: async () => undefined };

/**
 * The wake-ups for `database`: PGlite's own NOTIFY when embedded; on PostgreSQL a LISTEN on
 * `listenUrl` (CHANGES_LISTEN_URL, else DATABASE_URL), or none without a URL.
 */
export function changeSignalsFor(database: Database, listenUrl: string | undefined, logger: Logger): ChangeSignals {
  if (database.pglite !== undefined) return pgliteSignals(database.pglite);
  return listenUrl === undefined ? noSignals : postgresSignals(listenUrl, logger);
}
