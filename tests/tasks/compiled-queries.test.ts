import { describe, expect, it } from '@jest/globals';
import {
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type CompiledQuery,
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
import { ownerIdFromVerifiedSubject } from '../../src/auth/owner-id.js';
import type { DB } from '../../src/db/schema.js';
import { tasksOf, type PageQuery, type TaskFields } from '../../src/tasks/tasks.repository.js';

/**
 * The repository compiles its hot queries once per shape and then sends the SQL text with fresh
 * parameters (compiledOnce): what it sends must be exactly what Kysely's builder compiles for the
 * same call, text (the owner scope names prepared statements by it) and parameters alike, and it
 * must still pass through the database's plugins, as the owner scope requires.
 */

/** Like the owner scope's tag: a query the plugins never saw is refused. */
const seen = new WeakSet<QueryId>();
class Tag implements KyselyPlugin {
  transformQuery({ node, queryId }: PluginTransformQueryArgs): RootOperationNode {
    seen.add(queryId);
    return node;
  }
  async transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return result;
  }
}

/** What reached the driver, in order; every query "returns" one row and affects `affected` rows. */
const sent: CompiledQuery[] = [];
let affected = 1n;
const connection: DatabaseConnection = {
  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    if (!seen.has(compiled.queryId)) throw new Error('a query reached the driver without passing the plugins');
    sent.push(compiled);
    return { rows: [{ id: 'a row' } as R], numAffectedRows: affected };
  },
  // eslint-disable-next-line require-yield -- the interface asks for an async generator
  async *streamQuery(): AsyncIterableIterator<QueryResult<never>> {
    throw new Error('not streamed');
  },
};
const driver: Driver = {
  init: async () => undefined,
  acquireConnection: async () => connection,
  beginTransaction: async () => undefined,
  commitTransaction: async () => undefined,
  rollbackTransaction: async () => undefined,
  releaseConnection: async () => undefined,
  destroy: async () => undefined,
};
const db = new Kysely<DB>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => driver,
    createIntrospector: (kysely) => new PostgresIntrospector(kysely),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
}).withPlugin(new Tag());

const alice = tasksOf(db, ownerIdFromVerifiedSubject('user-alice'));
const bob = tasksOf(db, ownerIdFromVerifiedSubject('user-bob'));
type Tasks = typeof alice;

/** The one query `call` sent, as SQL and parameters, and whether it was built (not from the cache). */
async function sentBy(call: () => Promise<unknown>) {
  sent.length = 0;
  await call();
  expect(sent).toHaveLength(1);
  const [query] = sent;
  return { sql: query!.sql, parameters: query!.parameters, built: query!.query.kind !== 'RawNode' };
}
const compiled = (query: { compile(): CompiledQuery }) => {
  const { sql, parameters } = query.compile();
  return { sql, parameters };
};

const firstPage: PageQuery = { limit: 21, sort: { field: 'created_at', direction: 'desc' } };
const fields: TaskFields = { completed: false, title: 'a', priority: 'high', tags: ['x', 'y'] };
const replacement: Required<TaskFields> = {
  description: null,
  completed: true,
  priority: 'medium',
  due_at: '2030-01-01T00:00:00.000Z',
  tags: [],
  title: 'whole',
};

/** Representative shapes, each called three times with new values (and two owners): built the first time only. */
const shapes: [
  string,
  (tasks: Tasks, n: number) => { run: () => Promise<unknown>; query: { compile(): CompiledQuery } },
][] = [
  ['find', (tasks, n) => ({ run: () => tasks.find(`id-${n}`), query: tasks.findQuery(`id-${n}`) })],
  [
    'the default first page',
    (tasks, n) => {
      const query = { ...firstPage, limit: 20 + n };
      return { run: () => tasks.page(query), query: tasks.pageQuery(query) };
    },
  ],
  [
    'a next page by title',
    (tasks, n) => {
      const query: PageQuery = {
        limit: 11,
        sort: { field: 'title', direction: 'asc' },
        after: { key: `k${n}`, id: `id-${n}` },
      };
      return { run: () => tasks.page(query), query: tasks.pageQuery(query) };
    },
  ],
  [
    'a create',
    (tasks, n) => {
      const created = { ...fields, title: `task ${n}`, tags: [`tag ${n}`] };
      return { run: () => tasks.insert(created), query: tasks.insertQuery(created) };
    },
  ],
  [
    'a completed create in another key order',
    (tasks, n) => {
      const created: TaskFields = { title: `task ${n}`, due_at: null, completed: true, description: `d${n}` };
      return { run: () => tasks.insert(created), query: tasks.insertQuery(created) };
    },
  ],
  [
    'a patch',
    (tasks, n) => {
      const patch = { title: `patched ${n}` };
      return { run: () => tasks.update(`id-${n}`, patch), query: tasks.updateQuery(`id-${n}`, patch, 'any') };
    },
  ],
  [
    'a patch un-completing, under If-Match with two versions',
    (tasks, n) => {
      const patch = { completed: false, description: undefined, priority: 'low' as const };
      const versions = [n, n + 10];
      return {
        run: () => tasks.update(`id-${n}`, patch, versions),
        query: tasks.updateQuery(`id-${n}`, patch, versions),
      };
    },
  ],
  [
    'a replace',
    (tasks, n) => {
      const whole = { ...replacement, title: `whole ${n}`, tags: [`t${n}`] };
      return { run: () => tasks.update(`id-${n}`, whole, [n]), query: tasks.updateQuery(`id-${n}`, whole, [n]) };
    },
  ],
  ['a delete', (tasks, n) => ({ run: () => tasks.remove(`id-${n}`), query: tasks.removeQuery(`id-${n}`, 'any') })],
  [
    'a delete under If-Match',
    (tasks, n) => ({ run: () => tasks.remove(`id-${n}`, [n]), query: tasks.removeQuery(`id-${n}`, [n]) }),
  ],
];

describe('queries compiled once per shape', () => {
  it.each(shapes)('%s: sends exactly what the builder compiles, built once, then from the cache', async (_, call) => {
    const first = call(alice, 1);
    const built = await sentBy(first.run);
    expect(built).toEqual({ ...compiled(first.query), built: true });
    for (const [tasks, n] of [
      [bob, 2],
      [alice, 3],
    ] as const) {
      const again = call(tasks, n);
      expect(await sentBy(again.run)).toEqual({ ...compiled(again.query), built: false });
    }
  });

  it('builds a filtered page each time, exactly as before', async () => {
    const filtered: PageQuery = { ...firstPage, completed: false, priorities: ['high'], text: '' };
    for (let i = 0; i < 2; i += 1) {
      expect(await sentBy(() => alice.page(filtered))).toEqual({ ...compiled(alice.pageQuery(filtered)), built: true });
    }
    // Empty lists filter nothing (pageQuery's `$if`s leave them out): the plain page, from the cache.
    const unfiltered: PageQuery = { ...firstPage, priorities: [], tags: [], completed: undefined };
    await alice.page(unfiltered);
    expect(await sentBy(() => alice.page(unfiltered))).toEqual({
      ...compiled(alice.pageQuery(unfiltered)),
      built: false,
    });
  });

  it('never caches a shape whose parameters are not the ones Kysely compiled', async () => {
    // Not a TaskFields: an `owner_id` among the fields puts the parameters out of the list's order.
    const odd = { title: 'odd', owner_id: 'someone' } as TaskFields;
    for (let i = 0; i < 2; i += 1) {
      expect(await sentBy(() => alice.insert(odd))).toEqual({ ...compiled(alice.insertQuery(odd)), built: true });
    }
  });

  it('returns what the builder’s execute methods returned: the first row, or whether a row was deleted', async () => {
    await expect(alice.find('id-1')).resolves.toEqual({ id: 'a row' });
    await expect(alice.insert(fields)).resolves.toEqual({ id: 'a row' });
    await expect(alice.remove('id-1')).resolves.toBe(true);
    affected = 0n;
    await expect(alice.remove('id-1')).resolves.toBe(false);
    affected = 1n;
  });
});
