import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { OwnerId } from '../auth/owner-id.js';
import type { CleanPool } from './clean-pool.js';
import type { Database } from './database.js';
import { ConnectionNotClean } from './errors.js';
import { APP_ROLE, OWNER_SETTING } from './migrations/0004_row_level_security.js';
import type { DB } from './schema.js';

type Work<T> = (db: Kysely<DB>) => Promise<T>;

/**
 * Database access in which PostgreSQL shows and accepts only `owner`'s rows (row-level
 * security), whatever the queries say: calling it runs each statement `work` issues on its own,
 * scoped; `.transaction` runs all of `work` in one scoped transaction, for writes that must be
 * atomic together.
 */
export interface OwnerScope {
  <T>(owner: OwnerId, work: Work<T>): Promise<T>;
  transaction<T>(owner: OwnerId, work: Work<T>): Promise<T>;
}

/** Switches to the role and names the owner, both until the end of the current transaction. */
const SCOPE_SQL = `select set_config('role', $1, true), set_config('${OWNER_SETTING}', $2, true)`;

/**
 * A pg query preceded, in the same message batch and so in the same implicit transaction, by
 * SCOPE_SQL: Parse/Bind/Execute of the scope, then the query's own Parse/Bind/Describe/Execute,
 * then one Sync. PostgreSQL runs everything up to a Sync as one transaction, so the settings hold
 * for the query and end with it — one round trip, bound parameters, and nothing left on the
 * connection. The scope statement's row and completion are not part of the result.
 */
class OwnerScopedQuery extends pg.Query {
  #scopeDone = false;
  readonly #owner: string;

  constructor(text: string, values: unknown[], owner: string, callback: (error: Error | undefined, result: pg.QueryResult) => void) {
    super({ text, values, queryMode: 'extended' } as pg.QueryConfig, undefined, callback);
    this.#owner = owner;
  }

  // pg's Query protocol hooks; untyped in @types/pg.
  prepare(connection: { parse(m: object): void; bind(m: object): void; execute(m: object): void }): void {
    connection.parse({ text: SCOPE_SQL });
    connection.bind({ values: [APP_ROLE, this.#owner] });
    connection.execute({ portal: '' });
    (pg.Query.prototype as unknown as { prepare(c: unknown): void }).prepare.call(this, connection);
  }

  handleDataRow(message: unknown): void {
    if (this.#scopeDone) (pg.Query.prototype as unknown as { handleDataRow(m: unknown): void }).handleDataRow.call(this, message);
  }

  handleCommandComplete(message: unknown, connection: unknown): void {
    if (!this.#scopeDone) {
      this.#scopeDone = true;
      return;
    }
    (pg.Query.prototype as unknown as { handleCommandComplete(m: unknown, c: unknown): void }).handleCommandComplete.call(this, message, connection);
  }
}

/**
 * A pool whose clients send every query as an OwnerScopedQuery for `owner`. Each statement is its
 * own implicit transaction, so PostgreSQL must report the connection idle outside a transaction
 * when it is done; if not (the connection was inside a transaction it did not know of), the
 * statement's work is not committed: the caller gets an error instead of a result, and the
 * connection is destroyed on release.
 */
function scopedPool(pool: CleanPool, owner: string) {
  return {
    options: pool.options,
    Client: pg.Client,
    async connect() {
      const client = await pool.connect();
      return {
        processID: (client as unknown as { processID?: number }).processID,
        query: (text: string, values: unknown[]) =>
          new Promise<pg.QueryResult>((resolve, reject) => {
            client.query(new OwnerScopedQuery(text, values ?? [], owner, (error, result) => {
              if (error) return reject(error);
              const unclean = pool.discardReasonOf(client);
              if (unclean === undefined) return resolve(result);
              pool.taint(client);
              reject(new ConnectionNotClean(unclean));
            }));
          }),
        release: (destroy?: boolean) => client.release(destroy),
      };
    },
    end: async () => undefined,
  };
}

/**
 * The request path's only way to the owner-scoped tables. Every statement runs as the
 * `tasks_api_app` role with the owner named, both transaction-local (`set_config(…, true)`), so
 * row-level security filters it: a query that forgot `where owner_id = …` still sees only the
 * caller's rows, and a pooled connection never carries the settings to the next request.
 *
 * On PostgreSQL a statement and its scope travel together in one round trip (OwnerScopedQuery):
 * a request costs one small statement more per statement, not a transaction. `.transaction` is a
 * transaction that starts with the scope statement; the only writes that need one (an idempotent
 * create and its stored response) are rare enough that its extra round trips do not matter.
 * PGlite is in-process, where round trips cost nothing: transactions for both.
 */
export function ownerScope(database: Pick<Database, 'db' | 'pool'>): OwnerScope {
  const { db, pool } = database;
  const transaction = <T>(owner: OwnerId, work: Work<T>) =>
    db.transaction().execute(async (trx) => {
      await trx.executeQuery(CompiledQuery.raw(SCOPE_SQL, [APP_ROLE, owner]));
      return work(trx);
    });
  if (pool === undefined) return Object.assign(transaction, { transaction });
  const scoped = <T>(owner: OwnerId, work: Work<T>) =>
    work(new Kysely<DB>({ dialect: new PostgresDialect({ pool: scopedPool(pool, owner) as unknown as pg.Pool }) }));
  return Object.assign(scoped, { transaction });
}
