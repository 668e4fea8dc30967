import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from '../logger.js';
import type { DB } from './schema.js';

export interface Database {
  db: Kysely<DB>;
  kind: 'postgres' | 'pglite';
  /** The pg pool behind `db` (PostgreSQL only): the owner scope's queries and the pool metrics use it. */
  pool?: pg.Pool;
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** A PostgreSQL server; without it, embedded PGlite is used. */
  url?: string;
  poolMax?: number;
  /** Where PGlite keeps its files; `memory://` for a throwaway database. */
  pgliteDir?: string;
  logger?: Logger;
}

/** PostgreSQL through a `pg` pool when a URL is given, else embedded PGlite. */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const pool = options.url ? postgresPool(options) : undefined;
  const dialect = pool ? new PostgresDialect({ pool }) : await pgliteDialect(options.pgliteDir ?? 'memory://');
  const db = new Kysely<DB>({ dialect });
  return {
    db,
    kind: pool ? 'postgres' : 'pglite',
    pool,
    async ping() {
      await sql`select 1`.execute(db);
    },
    close: () => db.destroy(),
  };
}

function postgresPool({ url, poolMax = 10, logger }: DatabaseOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolMax,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: 10_000,
    // Client-side too: a server that stops answering (network cut, not a clean close) fails the query.
    query_timeout: 12_000,
  });
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

async function pgliteDialect(dir: string): Promise<PGliteDialect> {
  if (!dir.startsWith('memory://')) await mkdir(dir, { recursive: true });
  const pglite = new PGlite(dir);
  await pglite.waitReady;
  return new PGliteDialect({ pglite });
}
