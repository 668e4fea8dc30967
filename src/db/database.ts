import { mkdir } from 'node:fs/promises';
import type { PGlite, PGliteOptions } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from '../logger.js';
import { CleanPool } from './clean-pool.js';
import { lockDataDirectory } from './data-dir-lock.js';
import { MigrationSafePostgresDialect } from './migration-lock.js';
import type { DB } from './schema.js';

export interface Database {
  db: Kysely<DB>;
  kind: 'postgres' | 'pglite';
  /** The pg pool behind `db` (PostgreSQL only): the owner scope's queries and the pool metrics use it. */
  pool?: CleanPool;
  /** The embedded database behind `db` (PGlite only): the job queue shares it (see webhooks/jobs). */
  pglite?: PGlite;
  /** Whether the owner scope may prepare named statements (PostgreSQL only; see DatabaseOptions). */
  preparedStatements: boolean;
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** A PostgreSQL server; without it, embedded PGlite is used. */
  url?: string;
  poolMax?: number;
  /**
   * Server side: the longest a statement may run, and a session may sit idle inside a transaction,
   * before PostgreSQL ends it (10 s).
   */
  statementTimeoutMs?: number;
  /** Server side: idle_in_transaction_session_timeout; the statement timeout unless given (0: off). */
  idleInTransactionTimeoutMs?: number;
  /** Client side, above the server's: the longest a query may wait for its reply (12 s). */
  queryTimeoutMs?: number;
  /**
   * Named statements, parsed and planned once per connection (true): PostgreSQL directly, or a
   * pooler that keeps them per client (PgBouncer >= 1.21 with max_prepared_statements). False for
   * a transaction pooler that cannot (older PgBouncer): every statement then goes unnamed.
   */
  preparedStatements?: boolean;
  /** Where PGlite keeps its files; `memory://` for a throwaway database. */
  pgliteDir?: string;
  /** A data directory to start PGlite from, as `dumpDataDir` wrote it (the tests' migrated template). */
  pgliteDump?: Blob;
  /**
   * PostgreSQL settings for PGlite on top of its defaults, as `-c name=value` at its start (the
   * test servers lower `shared_buffers`: see tests/helpers/server.ts).
   */
  pgliteSettings?: Record<string, string>;
  /**
   * PGlite's WebAssembly, compiled already: a process that starts many databases (the tests) gives
   * the same module to each instead of compiling PostgreSQL again for every one.
   */
  pgliteWasmModule?: PGliteOptions['pgliteWasmModule'];
  logger?: Logger;
}

/** PostgreSQL through a `pg` pool when a URL is given, else embedded PGlite. */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const pool = options.url ? postgresPool(options) : undefined;
  const embedded = pool ? undefined : await embeddedPglite(options.pgliteDir ?? 'memory://', options);
  const db = new Kysely<DB>({ dialect: pool ? new MigrationSafePostgresDialect({ pool }) : embedded!.dialect });
  return {
    db,
    kind: pool ? 'postgres' : 'pglite',
    pool,
    pglite: embedded?.pglite,
    preparedStatements: pool !== undefined && options.preparedStatements !== false,
    async ping() {
      await sql`select 1`.execute(db);
    },
    async close() {
      await db.destroy();
      await embedded?.unlock();
    },
  };
}

function postgresPool({
  url,
  poolMax = 10,
  statementTimeoutMs = 10_000,
  idleInTransactionTimeoutMs = statementTimeoutMs,
  queryTimeoutMs = 12_000,
  logger,
}: DatabaseOptions): CleanPool {
  if (queryTimeoutMs <= Math.max(statementTimeoutMs, idleInTransactionTimeoutMs)) {
    throw new Error(
      `the client-side query timeout (${queryTimeoutMs} ms) must be above the server-side timeouts (${statementTimeoutMs} ms, ${idleInTransactionTimeoutMs} ms)`,
    );
  }
  const pool = new CleanPool(
    {
      connectionString: url,
      max: poolMax,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000,
      // Server side, so PostgreSQL itself ends a statement that runs too long and a transaction
      // whose client went silent (a partition, a crash) instead of holding its locks until TCP
      // gives up; both below the client's timeout, so the server normally answers first.
      statement_timeout: statementTimeoutMs,
      idle_in_transaction_session_timeout: idleInTransactionTimeoutMs,
      // Client-side too: a server that stops answering (network cut, not a clean close) fails the query.
      query_timeout: queryTimeoutMs,
    },
    (reason) => logger?.warn('database connection discarded', { reason }),
  );
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', (error) => logger?.error('idle database connection failed', { error: error.message }));
  // A connection can also die while checked out between two queries (database restart, network
  // cut): pg then emits 'error' on the client, which must never go unhandled (it would crash the
  // process). The query in progress, if any, fails on its own and the pool drops the client.
  pool.on('connect', (client) => {
    client.on('error', (error) => logger?.error('database connection lost', { error: error.message }));
  });
  return pool;
}

/**
 * PGlite in `dir`, which this process holds until `unlock`: PGlite does not lock its files, and two
 * servers on one directory would both start and overwrite each other's writes.
 */
async function embeddedPglite(
  dir: string,
  {
    pgliteDump: dump,
    pgliteSettings: settings = {},
    pgliteWasmModule,
  }: Pick<DatabaseOptions, 'pgliteDump' | 'pgliteSettings' | 'pgliteWasmModule'>,
): Promise<{ dialect: PGliteDialect; pglite: PGlite; unlock(): Promise<void> }> {
  const inMemory = dir.startsWith('memory://');
  if (!inMemory) await mkdir(dir, { recursive: true });
  const unlock = inMemory ? async () => undefined : await lockDataDirectory(dir);
  try {
    // Loaded only here: a process on a PostgreSQL server never pays PGlite's memory (see
    // tests/db/lazy-dependencies.process.test.ts).
    const { PGlite, types } = await import('@electric-sql/pglite');
    // Timestamps parsed by pg's own parser, as on PostgreSQL: PGlite's reads year 0001 as 2001.
    const timestamp = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ) as (value: string) => unknown;
    const pglite = new PGlite(dir, {
      parsers: { [types.TIMESTAMPTZ]: (value: string) => timestamp(value) },
      loadDataDir: dump,
      pgliteWasmModule,
      // Starting from existing files arms PostgreSQL's 10 s startup-progress timer, which PGlite
      // leaves pending after close: the process then cannot exit until it fires, again and again.
      startParams: [
        ...PGlite.defaultStartParams,
        '-c',
        'log_startup_progress_interval=0',
        ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
      ],
    });
    await pglite.waitReady;
    return { dialect: new PGliteDialect({ pglite }), pglite, unlock };
  } catch (error) {
    await unlock();
    throw error;
  }
}
