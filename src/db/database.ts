import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from '../logger.js';
import type { DB } from './schema.js';

export interface Database {
  db: Kysely<DB>;
  kind: 'postgres' | 'pglite';
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
  const dialect = options.url ? postgresDialect(options) : await pgliteDialect(options.pgliteDir ?? 'memory://');
  const db = new Kysely<DB>({ dialect });
  return {
    db,
    kind: options.url ? 'postgres' : 'pglite',
    async ping() {
      await sql`select 1`.execute(db);
    },
    close: () => db.destroy(),
  };
}

function postgresDialect({ url, poolMax = 10, logger }: DatabaseOptions): PostgresDialect {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolMax,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: 10_000,
  });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', (error) => logger?.error('idle database connection failed', { error: error.message }));
  return new PostgresDialect({ pool });
}

async function pgliteDialect(dir: string): Promise<PGliteDialect> {
  if (!dir.startsWith('memory://')) await mkdir(dir, { recursive: true });
  const pglite = new PGlite(dir);
  await pglite.waitReady;
  return new PGliteDialect({ pglite });
}
