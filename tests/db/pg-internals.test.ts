import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { ownerIdFromVerifiedSubject } from '../../src/auth/owner-id.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { ownerScope } from '../../src/db/owner-scope.js';
import { PrecededQuery } from '../../src/db/pg-internals.js';
import { APP_ROLE, OWNER_SETTING } from '../../src/db/roles.js';
import { projectRoot } from '../../src/http/contract.js';

/**
 * src/db/pg-internals.ts reaches into pg's and pg-pool's internals. These tests fail, each with
 * the list of what changed, when an install brings other versions than the ones it was written
 * against or one of those internals is gone, renamed or behaves otherwise: read that module's
 * header before moving a pin.
 */

const root = projectRoot();
const require = createRequire(join(root, 'package.json'));
/** The version of the package `name` whose module `entry` is (pg-pool's exports do not include its package.json). */
function versionOf(name: string, entry: string): string {
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const path = join(dir, 'package.json');
    if (!existsSync(path)) continue;
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as { name?: string; version: string };
    if (manifest.name === name) return manifest.version;
  }
  throw new Error(`no package.json of ${name} above ${entry}`);
}

describe('pg internals: versions', () => {
  it('the installed pg and pg-pool are the ones pinned in package.json and named in pg-internals.ts', () => {
    const pinned = (
      JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
    ).dependencies;
    const header = /Written against pg (\S+) and pg-pool (\S+?),/.exec(
      readFileSync(join(root, 'src/db/pg-internals.ts'), 'utf8'),
    );
    // pg loads its own pg-pool: a copy nested under pg/ would escape the top-level pin.
    const pgEntry = require.resolve('pg');
    const installed = {
      pg: versionOf('pg', pgEntry),
      'pg-pool': versionOf('pg-pool', createRequire(pgEntry).resolve('pg-pool')),
    };
    const problems: string[] = [];
    if (header === null)
      problems.push('the header of src/db/pg-internals.ts no longer says "Written against pg X and pg-pool Y,"');
    for (const [name, index] of [
      ['pg', 1],
      ['pg-pool', 2],
    ] as const) {
      if (pinned[name] !== installed[name])
        problems.push(
          `package.json pins ${name} ${pinned[name]} (an exact version is required), but ${installed[name]} is installed`,
        );
      if (header !== null && header[index] !== installed[name])
        problems.push(
          `pg-internals.ts was written against ${name} ${header[index]}, but ${installed[name]} is installed`,
        );
    }
    expect(problems).toEqual([]);
  });
});

describe('pg internals: what pg-internals.ts touches is there', () => {
  it('the Query protocol hooks, the Connection writer, pg-pool’s _release', () => {
    const problems: string[] = [];
    const method = (owner: string, object: object, name: string, arity: number) => {
      const value = (object as Record<string, unknown>)[name];
      if (typeof value !== 'function') problems.push(`${owner}.${name} is no longer a function`);
      else if (value.length !== arity)
        problems.push(`${owner}.${name} now takes ${value.length} parameters, not ${arity}`);
    };
    method('pg.Query.prototype', pg.Query.prototype, 'prepare', 1);
    method('pg.Query.prototype', pg.Query.prototype, 'hasBeenParsed', 1);
    method('pg.Query.prototype', pg.Query.prototype, 'handleDataRow', 1);
    method('pg.Query.prototype', pg.Query.prototype, 'handleCommandComplete', 2);
    method('pg.Query.prototype', pg.Query.prototype, 'submit', 1);
    method('pg.Pool.prototype', pg.Pool.prototype, '_release', 3);
    method('pg.Client.prototype', pg.Client.prototype, 'getTransactionStatus', 0);
    const Connection = (pg as unknown as { Connection?: new () => object }).Connection;
    if (Connection === undefined) problems.push('pg.Connection is no longer exported');
    else {
      const connection = new Connection() as Record<string, unknown>;
      for (const name of ['parse', 'bind', 'describe', 'execute', 'sync'])
        method(
          'pg.Connection.prototype',
          Object.getPrototypeOf(connection) as object,
          name,
          1 - Number(name === 'sync'),
        );
      for (const field of ['parsedStatements', 'submittedNamedStatements']) {
        if (typeof connection[field] !== 'object' || connection[field] === null)
          problems.push(`a pg Connection no longer has the field ${field}`);
      }
    }
    const callback = () => undefined;
    const query = new pg.Query({ text: 'select 1', name: 'n' }, undefined, callback) as unknown as Record<
      string,
      unknown
    >;
    if (query.callback !== callback) problems.push('a pg Query no longer keeps its callback in the field `callback`');
    if (query.name !== 'n' || query.text !== 'select 1')
      problems.push('a pg Query no longer keeps its name and text in the fields `name` and `text`');
    expect(problems).toEqual([]);
  });

  /** A pg Connection that records what a query writes, instead of writing it. */
  function recordingConnection(parsed: Record<string, string> = {}) {
    const written: string[] = [];
    const record =
      (kind: string) => (message?: { name?: string; text?: string; statement?: string; values?: unknown }) => {
        const detail =
          kind === 'parse'
            ? `${String(message?.name ?? '')}:${String(message?.text)}`
            : kind === 'bind'
              ? `${String(message?.statement ?? '')}:${JSON.stringify(message?.values)}`
              : '';
        written.push(detail === '' ? kind : `${kind} ${detail}`);
      };
    const connection = {
      stream: { cork() {}, uncork() {} },
      parsedStatements: parsed,
      submittedNamedStatements: {} as Record<string, string>,
      parse: record('parse'),
      bind: record('bind'),
      describe: record('describe'),
      execute: record('execute'),
      sync: record('sync'),
      flush: record('flush'),
    };
    return { connection, written };
  }

  const preceding = { text: 'select set_config($1, $2, true)', values: ['k', 'v'], name: 'prefix' };

  it('PrecededQuery writes the preceding statement and the query as one batch with one Sync, as pg’s prepare does it', () => {
    // A named query the connection has not parsed, the preceding statement not prepared there.
    const first = recordingConnection();
    const named = new PrecededQuery('select $1::int as n', [7], 'q1', preceding, () => undefined);
    expect((named as unknown as { submit(c: unknown): unknown }).submit(first.connection)).toBeNull();
    expect(first.written).toEqual([
      'parse q1:select $1::int as n', // its own Parse first: pg marks q1 parsed on the batch's first ParseComplete
      `parse :${preceding.text}`,
      'bind :["k","v"]',
      'execute',
      'bind q1:[7]', // pg's prepare: no second Parse (submittedNamedStatements), then Bind/Describe/Execute/Sync
      'describe',
      'execute',
      'sync',
    ]);
    expect(first.connection.submittedNamedStatements).toEqual({ q1: 'select $1::int as n' });

    // An unnamed query; the preceding statement prepared on the connection under its name.
    const second = recordingConnection({ prefix: preceding.text });
    const unnamed = new PrecededQuery('select 2', [], undefined, preceding, () => undefined);
    (unnamed as unknown as { submit(c: unknown): unknown }).submit(second.connection);
    expect(second.written).toEqual([
      'bind prefix:["k","v"]',
      'execute',
      'parse :select 2',
      'bind :[]',
      'describe',
      'execute',
      'sync',
    ]);
  });

  it('PrecededQuery answers with the query’s rows alone: the preceding statement’s row and completion are dropped', async () => {
    const { connection } = recordingConnection();
    const result = new Promise<pg.QueryResult>((resolve, reject) => {
      const query = new PrecededQuery('select 7 as n', [], undefined, preceding, (error, rows) =>
        error ? reject(error) : resolve(rows),
      );
      const hooks = query as unknown as {
        submit(c: unknown): unknown;
        handleRowDescription(m: unknown): void;
        handleDataRow(m: unknown): void;
        handleCommandComplete(m: unknown, c: unknown): void;
        handleReadyForQuery(c: unknown): void;
      };
      hooks.submit(connection);
      // What PostgreSQL answers the batch: the preceding statement (Execute without Describe: no
      // RowDescription) returns a row and completes, then the query's own description, row, completion.
      hooks.handleDataRow({ fields: ['k', 'v'] });
      hooks.handleCommandComplete({ text: 'SELECT 1' }, connection);
      hooks.handleRowDescription({ fields: [{ name: 'n', dataTypeID: 23, format: 'text' }] });
      hooks.handleDataRow({ fields: ['7'] });
      hooks.handleCommandComplete({ text: 'SELECT 1' }, connection);
      hooks.handleReadyForQuery(connection);
    });
    const { command, rowCount, rows } = await result;
    expect({ command, rowCount, rows }).toEqual({ command: 'SELECT', rowCount: 1, rows: [{ n: 7 }] });
  });
});

// The round trip through the hooks needs a real PostgreSQL (PGlite does not use pg's protocol code).
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

onPostgres('pg internals: a real round trip on PostgreSQL', () => {
  const owner = ownerIdFromVerifiedSubject(`pg-internals-${process.pid}`);
  const databases: Database[] = [];
  const open = async (preparedStatements: boolean) => {
    const database = await openDatabase({ url: process.env.TEST_DATABASE_URL, poolMax: 1, preparedStatements });
    databases.push(database);
    return database;
  };
  beforeAll(async () => {
    const database = await open(true);
    await migrateToLatest(database.db);
  });
  afterAll(async () => {
    for (const database of databases) await database.close();
  });

  /** Who the statement ran as, for which owner, as PostgreSQL saw it. */
  const whoami = sql<{
    role: string;
    owner: string | null;
  }>`select current_user as role, current_setting(${OWNER_SETTING}, true) as owner`;

  // Behind a transaction pooler without named statements (TEST_DATABASE_PREPARED_STATEMENTS=off,
  // CI's PgBouncer 1.18) a named statement would land on whichever server connection the pooler
  // picked and stay there for other clients: only the unnamed path is the one that runs there.
  const namedStatements = process.env.TEST_DATABASE_PREPARED_STATEMENTS === 'off' ? [false] : [true, false];
  it.each(namedStatements)(
    'a scoped statement runs as the app role for its owner, in one batch, and leaves nothing behind (named statements: %s)',
    async (prepared) => {
      const database = await open(prepared);
      const pool = database.pool!;
      const asOwner = ownerScope(database);
      for (let i = 0; i < 3; i += 1) {
        // The first time on the connection the scope statement is parsed (or prepared); then bound by name.
        expect((await asOwner(owner, (db) => whoami.execute(db))).rows).toEqual([{ role: APP_ROLE, owner }]);
      }
      // The same (only) connection, outside the scope: neither the role nor the owner stayed.
      const after = (await whoami.execute(database.db)).rows[0]!;
      expect(after.role).not.toBe(APP_ROLE);
      expect(after.owner ?? '').toBe('');
      const prepares = (
        await sql<{ name: string }>`select name from pg_prepared_statements where name = 'tasks_api_scope'`.execute(
          database.db,
        )
      ).rows;
      expect(prepares.length).toBe(prepared ? 1 : 0);
      expect({ total: pool.totalCount, discarded: pool.discarded }).toEqual({
        total: 1,
        discarded: { failed: 0, busy: 0, in_transaction: 0 },
      });
    },
  );

  it('pg-pool’s _release still decides: CleanPool keeps a clean client and destroys one left in a transaction, busy, or after a client-side failure', async () => {
    const pool = (await open(true)).pool!;
    const kept = await pool.connect();
    await kept.query('select 1');
    await kept.query('select 1/0').catch(() => undefined); // a PostgreSQL error: the protocol is back in step, nothing is marked
    // (The error reaches the caller before PostgreSQL's ReadyForQuery does, which it flushes apart:
    // released at once, the client may still be waiting for it, and is then destroyed as busy.)
    await kept.query('select 1');
    kept.release();
    expect({ total: pool.totalCount, idle: pool.idleCount, discarded: pool.discarded }).toEqual({
      total: 1,
      idle: 1,
      discarded: { failed: 0, busy: 0, in_transaction: 0 },
    });

    const inTransaction = await pool.connect();
    expect(inTransaction).toBe(kept);
    await inTransaction.query('begin');
    expect(inTransaction.getTransactionStatus()).toBe('T');
    inTransaction.release();
    expect(pool.discarded.in_transaction).toBe(1);

    const busy = await pool.connect();
    const pending = busy.query('select pg_sleep(0.2)').catch(() => undefined); // Client#readyForQuery is false until it is answered
    busy.release();
    await pending;
    expect(pool.discarded.busy).toBe(1);

    const timedOut = await pool.connect();
    await expect(timedOut.query({ text: 'select pg_sleep(1)', query_timeout: 50 } as pg.QueryConfig)).rejects.toThrow(
      /timeout/i,
    );
    timedOut.release();
    expect(pool.discarded.failed).toBe(1);
    expect(pool.totalCount).toBe(0); // each of the three was destroyed, not kept
  });
});
