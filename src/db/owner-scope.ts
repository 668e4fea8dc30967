import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  type DatabaseConnection,
  type Driver,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryId,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import pg from 'pg';
import type { CleanPool } from './clean-pool.js';
import type { Database } from './database.js';
import { ConnectionNotClean } from './errors.js';
import type { OwnerId } from './owner-id.js';
import { PrecededQuery, type Preceding } from './pg-internals.js';
import { APP_ROLE, OWNER_SETTING, TRACEPARENT_SETTING } from './roles.js';
import { currentTraceparent } from '../telemetry/tracing.js';
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
/** The same, and the trace context the webhook deliveries a write causes will carry (tracing on only). */
const TRACED_SCOPE_SQL = `select set_config('role', $1, true), set_config('${OWNER_SETTING}', $2, true), set_config('${TRACEPARENT_SETTING}', $3, true)`;

/**
 * The scope statement for `owner`: with the current trace context when tracing is on, a span is
 * current and `sql` may write (a read causes no delivery; without `sql`, a transaction, it may).
 */
function scopeStatement(owner: string, sql?: string): { text: string; values: unknown[] } {
  const traceparent = currentTraceparent();
  return traceparent === undefined || (sql !== undefined && /^\s*select\b/i.test(sql))
    ? { text: SCOPE_SQL, values: [APP_ROLE, owner] }
    : { text: TRACED_SCOPE_SQL, values: [APP_ROLE, owner, traceparent] };
}

/**
 * Names for the statements the owner scope prepares (PostgreSQL parses and plans a named statement
 * once per connection, not on every execution): one per distinct SQL text, never reused for
 * another. Kysely builds a finite set of texts, but a list filter's `in (…)` varies with its
 * length; past MAX_NAMED distinct texts, new ones go unnamed rather than grow the connections'
 * prepared statements without bound.
 */
const MAX_NAMED = 1000;
function statementNames() {
  const names = new Map<string, string>();
  return (text: string): string | undefined => {
    let name = names.get(text);
    if (name === undefined && names.size < MAX_NAMED) names.set(text, (name = `tasks_api_${names.size + 1}`));
    return name;
  };
}

/** The scope statement's name where it is prepared (on a connection's first use by the scope). */
const SCOPE_STATEMENT = 'tasks_api_scope';

/**
 * The scope statement, ahead of `owner`'s query in the query's own message batch (see
 * PrecededQuery): bound by name where ScopedDriver prepared it on the connection, else parsed in
 * the batch.
 */
const scopeFor = (owner: string, sql: string): Preceding => ({
  ...scopeStatement(owner, sql),
  name: SCOPE_STATEMENT,
});

/** Which owner each query built through an owner's view of the scoped Kysely is for (see OwnerTag). */
const ownerOf = new WeakMap<QueryId, string>();

/** Tags every query of one owner's view; the scoped connection runs it for that owner. */
class OwnerTag implements KyselyPlugin {
  constructor(readonly owner: string) {}
  transformQuery({ node, queryId }: PluginTransformQueryArgs): RootOperationNode {
    ownerOf.set(queryId, this.owner);
    return node;
  }
  async transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return result;
  }
}

/**
 * A Kysely connection over a pooled pg client that sends every query preceded, in one round trip,
 * by the scope for the owner it was tagged with (PrecededQuery, in pg-internals.ts); a query
 * without an owner is refused, never run unscoped. Each statement is its own implicit
 * transaction, so PostgreSQL must report the connection idle outside a transaction when it is
 * done; if not (the connection was inside a transaction it did not know of), the statement's work
 * is not committed: the caller gets an error instead of a result, and the connection is destroyed
 * on release.
 */
class ScopedConnection implements DatabaseConnection {
  constructor(
    readonly client: pg.PoolClient,
    readonly pool: CleanPool,
    readonly nameOf: (text: string) => string | undefined,
  ) {}

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const owner = ownerOf.get(compiled.queryId);
    if (owner === undefined) return Promise.reject(new Error('a query reached the owner scope without an owner'));
    const { client, pool } = this;
    return new Promise((resolve, reject) => {
      client.query(
        new PrecededQuery(
          compiled.sql,
          compiled.parameters as unknown[],
          this.nameOf(compiled.sql),
          scopeFor(owner, compiled.sql),
          (error, result) => {
            if (error) return reject(error);
            const unclean = pool.discardReasonOf(client);
            if (unclean !== undefined) {
              pool.taint(client);
              return reject(new ConnectionNotClean(unclean));
            }
            const { command, rowCount, rows } = result;
            const affected =
              command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
            resolve({ rows: (rows ?? []) as R[], ...(affected ? { numAffectedRows: BigInt(rowCount ?? 0) } : {}) });
          },
        ) as never,
      );
    });
  }

  // eslint-disable-next-line require-yield -- Kysely's Driver asks for an async generator; this one only refuses
  async *streamQuery(): AsyncIterableIterator<QueryResult<never>> {
    throw new Error('the owner scope does not stream');
  }
}

/** Kysely's driver for the owner scope: pooled connections, statements only (`.transaction` is the base database's). */
class ScopedDriver implements Driver {
  readonly #connections = new WeakMap<pg.PoolClient, ScopedConnection>();
  readonly nameOf: (text: string) => string | undefined;
  constructor(
    readonly pool: CleanPool,
    readonly prepared: boolean,
  ) {
    this.nameOf = prepared ? statementNames() : () => undefined;
  }
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    const client = await this.pool.connect();
    let connection = this.#connections.get(client);
    if (connection === undefined) {
      if (this.prepared) {
        try {
          // Prepared by a statement of its own (its settings are transaction-local: they end with it).
          await client.query({ name: SCOPE_STATEMENT, text: SCOPE_SQL, values: [APP_ROLE, ''] });
        } catch (error) {
          client.release(true);
          throw error;
        }
      }
      this.#connections.set(client, (connection = new ScopedConnection(client, this.pool, this.nameOf)));
    }
    return connection;
  }
  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    (connection as ScopedConnection).client.release();
  }
  async beginTransaction(): Promise<void> {
    throw new Error('the owner scope runs statements; use asOwner.transaction for a transaction');
  }
  commitTransaction(): Promise<void> {
    return this.beginTransaction();
  }
  rollbackTransaction(): Promise<void> {
    return this.beginTransaction();
  }
  async destroy(): Promise<void> {} // the pool is the database's, closed with it
}

class ScopedDialect extends PostgresDialect {
  constructor(readonly driver: ScopedDriver) {
    super({ pool: driver.pool });
  }
  override createDriver(): Driver {
    return this.driver;
  }
}

const scopes = new WeakMap<object, OwnerScope>();

/**
 * The request path's only way to the owner-scoped tables. Every statement runs as the
 * `tasks_api_app` role with the owner named, both transaction-local (`set_config(…, true)`), so
 * row-level security filters it: a query that forgot `where owner_id = …` still sees only the
 * caller's rows, and a pooled connection never carries the settings to the next request.
 *
 * On PostgreSQL a statement and its scope travel together in one round trip (PrecededQuery):
 * a request costs one small statement more per statement, not a transaction. One Kysely instance
 * serves every owner (a request gets a view of it tagged with its owner: `withPlugin`, two small
 * objects), and its statements are prepared once per connection unless the database says not to
 * (DATABASE_PREPARED_STATEMENTS=off, for poolers that cannot keep them). `.transaction` is a
 * transaction that starts with the scope statement; the only writes that need one (an idempotent
 * create and its stored response, attachment bookkeeping) are rare enough that its extra round
 * trips do not matter. PGlite is in-process, where round trips cost nothing: transactions for both.
 */
export function ownerScope(database: Pick<Database, 'db' | 'pool' | 'preparedStatements'>): OwnerScope {
  const known = scopes.get(database);
  if (known !== undefined) return known;
  const { db, pool } = database;
  const transaction = <T>(owner: OwnerId, work: Work<T>) =>
    db.transaction().execute(async (trx) => {
      const scope = scopeStatement(owner);
      await trx.executeQuery(CompiledQuery.raw(scope.text, scope.values));
      return work(trx);
    });
  let scope: OwnerScope;
  if (pool === undefined) {
    scope = Object.assign(transaction, { transaction });
  } else {
    const scoped = new Kysely<DB>({
      dialect: new ScopedDialect(new ScopedDriver(pool, database.preparedStatements !== false)),
    });
    scope = Object.assign(<T>(owner: OwnerId, work: Work<T>) => work(scoped.withPlugin(new OwnerTag(owner))), {
      transaction,
    });
  }
  scopes.set(database, scope);
  return scope;
}
