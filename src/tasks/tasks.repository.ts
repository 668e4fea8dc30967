import {
  NoResultError,
  sql,
  type Compilable,
  type Kysely,
  type QueryResult,
  type RawBuilder,
  type WhereInterface,
} from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import type { Position, Sort, SortField } from '../http/paging.js';

/** The columns the API shows; never `select *`, and never the owner. */
export const taskColumns = [
  'id',
  'title',
  'description',
  'completed',
  'priority',
  'due_at',
  'tags',
  'created_at',
  'updated_at',
  'completed_at',
  'version',
] as const;

type Priority = 'low' | 'medium' | 'high';

export interface TaskFields {
  title: string;
  description?: string | null;
  completed?: boolean;
  priority?: 'low' | 'medium' | 'high';
  due_at?: string | null;
  tags?: string[];
}

export interface PageQuery {
  limit: number;
  sort: Sort;
  completed?: boolean;
  priorities?: Priority[];
  /** Tasks carrying every one of these. */
  tags?: string[];
  dueBefore?: Date;
  dueAfter?: Date;
  /** Case-insensitive substring of title or description; every character literal. */
  text?: string;
  /** Rows strictly after this position in the sort's order. */
  after?: Position;
}

/**
 * Each sort's key, exactly as its index (migration 0002) spells it, so PostgreSQL walks the index
 * of the caller's rows in order instead of sorting, and the type its cursor key is cast to.
 */
const sortKeys: Record<
  SortField,
  { expression: (direction: Sort['direction']) => RawBuilder<unknown>; type: RawBuilder<unknown> }
> = {
  created_at: { expression: () => sql`created_at`, type: sql`timestamptz` },
  // Tasks without a due date come last both ways.
  due_at: {
    expression: (direction) =>
      direction === 'asc'
        ? sql`coalesce(due_at, 'infinity'::timestamptz)`
        : sql`coalesce(due_at, '-infinity'::timestamptz)`,
    type: sql`timestamptz`,
  },
  priority: { expression: () => sql`priority_rank`, type: sql`smallint` },
  title: { expression: () => sql`lower(title)`, type: sql`text` },
};

/** `\`, `%` and `_` stand for themselves in a LIKE pattern once escaped (backslash is PostgreSQL's default escape). */
const likeLiteral = (text: string): string => text.replace(/[\\%_]/g, '\\$&');

/** Versions that satisfy an `If-Match`: any (`*`, or no header) or one of these. */
export type VersionCondition = 'any' | readonly number[];

/** SQL texts Kysely compiled, by the shape of query they are for (see compiledOnce), oldest first. */
const compiledShapes = new Map<string, TemplateStringsArray>();
/** Far more than the shapes requests use; a flood of odd ones (long If-Match lists) evicts the oldest. */
const MAX_SHAPES = 200;

/**
 * Runs the query `build` makes, but builds and compiles it only on the first call for `shape`
 * (Kysely's `.execute()` does both on every call). Later calls send the SQL text compiled then,
 * byte for byte (the owner scope names its prepared statements by the text), with `parameters`
 * in its `$n` placeholders.
 *
 * `shape` must name everything that changes the text, and `parameters` must be the query's
 * values in the order the text numbers them. The first call checks the latter against what
 * Kysely compiled, text and values; a shape that fails is never cached, so a mistake in the
 * list costs speed, never correctness. The text runs through Kysely's `sql` tag, not
 * `CompiledQuery.raw`, so that `db`'s plugins see every query: the owner scope runs no query
 * its plugin did not tag. One cache serves every database: this file's SQL is PostgreSQL's,
 * over pg and PGlite alike, and no plugin here rewrites queries.
 */
async function compiledOnce<R>(
  db: Kysely<DB>,
  shape: string,
  parameters: readonly unknown[],
  build: () => Compilable<R>,
): Promise<QueryResult<R>> {
  const cached = compiledShapes.get(shape);
  if (cached !== undefined) return sql<R>(cached, ...parameters).execute(db);
  const built = build().compile();
  const parts = built.sql.split(/\$\d+/);
  const template = Object.assign(parts, { raw: parts });
  const replayed = sql(template, ...parameters).compile(db);
  const same =
    replayed.sql === built.sql &&
    replayed.parameters.length === built.parameters.length &&
    replayed.parameters.every((value, i) => value === built.parameters[i]);
  if (same) {
    if (compiledShapes.size >= MAX_SHAPES) compiledShapes.delete(compiledShapes.keys().next().value!);
    compiledShapes.set(shape, template);
  }
  return db.executeQuery(built);
}

/** The fields a write sets, in order: Kysely leaves out the undefined ones. */
const definedEntries = (fields: Partial<TaskFields>): [string, unknown][] =>
  Object.entries(fields).filter(([, value]) => value !== undefined);

/** The `If-Match` versions as parameters, and as part of a shape (their count makes the `in` list). */
const versionParameters = (versions: VersionCondition): readonly number[] => (versions === 'any' ? [] : versions);
const versionShape = (versions: VersionCondition): string => (versions === 'any' ? 'any' : `${versions.length}`);

const first = <R>({ rows }: QueryResult<R>): R | undefined => rows[0];

/**
 * All Kysely code of the tasks feature, for one owner. Every query starts from that owner's rows
 * through {@link ownedBy}; inserts take the owner from here, never from the caller's fields.
 */
export function tasksOf(db: Kysely<DB>, owner: OwnerId) {
  const ownedBy = <QB extends WhereInterface<DB, 'tasks'>>(qb: QB): QB => qb.where('tasks.owner_id', '=', owner) as QB;
  const completedAt = (completed: boolean | undefined) =>
    completed === undefined ? {} : { completed_at: completed ? sql<Date>`coalesce(completed_at, now())` : null };

  /**
   * One page in the sort's order, with each row's sort key as text (for the next cursor).
   * Unexecuted, so scripts/explain-list.ts can check its plan.
   */
  function pageQuery(query: PageQuery) {
    const { sort, after } = query;
    const key = sortKeys[sort.field].expression(sort.direction);
    const [comparison, direction] = sort.direction === 'asc' ? [sql`>`, 'asc' as const] : [sql`<`, 'desc' as const];
    return db
      .selectFrom('tasks')
      .select([...taskColumns, sql<string>`(${key})::text`.as('sort_key')])
      .$call(ownedBy)
      .$if(query.completed !== undefined, (qb) => qb.where('completed', '=', query.completed!))
      .$if(!!query.priorities?.length, (qb) => qb.where('priority', 'in', query.priorities!))
      .$if(!!query.tags?.length, (qb) => qb.where(sql<boolean>`tags @> ${query.tags!}::text[]`))
      .$if(query.dueBefore !== undefined, (qb) => qb.where('due_at', '<', query.dueBefore!))
      .$if(query.dueAfter !== undefined, (qb) => qb.where('due_at', '>=', query.dueAfter!))
      .$if(query.text !== undefined, (qb) => {
        const pattern = `%${likeLiteral(query.text!)}%`;
        return qb.where((eb) => eb.or([eb('title', 'ilike', pattern), eb('description', 'ilike', pattern)]));
      })
      .$if(after !== undefined, (qb) =>
        qb.where(
          sql<boolean>`(${key}, id) ${comparison} (${after!.key}::${sortKeys[sort.field].type}, ${after!.id}::uuid)`,
        ),
      )
      .orderBy(key, direction)
      .orderBy('id', direction)
      .limit(query.limit);
  }

  const findQuery = (id: string) => db.selectFrom('tasks').select(taskColumns).$call(ownedBy).where('id', '=', id);

  const insertQuery = (fields: TaskFields) =>
    db
      .insertInto('tasks')
      .values({ ...fields, owner_id: owner, completed_at: fields.completed ? sql<Date>`now()` : null })
      .returning(taskColumns);

  const updateQuery = (id: string, fields: Partial<TaskFields>, versions: VersionCondition) =>
    db
      .updateTable('tasks')
      .set({
        ...fields,
        ...completedAt(fields.completed),
        updated_at: sql<Date>`now()`,
        version: sql<number>`version + 1`,
      })
      .$call(ownedBy)
      .where('id', '=', id)
      .$if(versions !== 'any', (qb) => qb.where('version', 'in', versions as number[]))
      .returning(taskColumns);

  const removeQuery = (id: string, versions: VersionCondition) =>
    db
      .deleteFrom('tasks')
      .$call(ownedBy)
      .where('id', '=', id)
      .$if(versions !== 'any', (qb) => qb.where('version', 'in', versions as number[]));

  return {
    // The queries unexecuted: scripts/explain-list.ts checks the page's plan, and the tests that
    // what compiledOnce sends is exactly what Kysely builds.
    pageQuery,
    findQuery,
    insertQuery,
    updateQuery,
    removeQuery,

    /** A filtered page is built each time (its shapes are many); the plain pages of each sort are compiled once. */
    async page(query: PageQuery) {
      const { limit, sort, after, ...filters } = query;
      // As pageQuery's `$if`s: a filter applies unless undefined or an empty list.
      const filtered = Object.values(filters).some((filter: unknown) =>
        Array.isArray(filter) ? filter.length > 0 : filter !== undefined,
      );
      if (filtered) return pageQuery(query).execute();
      const shape = JSON.stringify(['page', sort.field, sort.direction, after !== undefined]);
      const parameters = after === undefined ? [owner, limit] : [owner, after.key, after.id, limit];
      return (await compiledOnce(db, shape, parameters, () => pageQuery(query))).rows;
    },

    /** The owner's tags with how many tasks carry each, most used first. */
    tagCounts(limit: number) {
      const tagged = db
        .selectFrom('tasks')
        .$call(ownedBy)
        .select(sql<string>`unnest(tags)`.as('tag'));
      return db
        .selectFrom(tagged.as('tagged'))
        .select(['tag', sql<number>`count(*)::int`.as('count')])
        .groupBy('tag')
        .orderBy('count', 'desc')
        .orderBy('tag', 'asc')
        .limit(limit)
        .execute();
    },

    async find(id: string) {
      return first(await compiledOnce(db, 'find', [owner, id], () => findQuery(id)));
    },

    async insert(fields: TaskFields) {
      const set = definedEntries(fields);
      const completed = !!fields.completed; // `completed_at`: now() if so, else a parameter (null)
      const shape = JSON.stringify(['insert', set.map(([column]) => column), completed]);
      const parameters = [...set.map(([, value]) => value), owner, ...(completed ? [] : [null])];
      const row = first(await compiledOnce(db, shape, parameters, () => insertQuery(fields)));
      // As executeTakeFirstOrThrow did (an INSERT … RETURNING of one row always returns it).
      if (row === undefined) throw new NoResultError(insertQuery(fields).toOperationNode());
      return row;
    },

    /**
     * Sets the given fields and bumps the version, if the task is the owner's and its version
     * satisfies `versions`; `completed_at` follows `completed`. The version is compared in the
     * UPDATE itself, so no concurrent change can slip between check and write.
     */
    async update(id: string, fields: Partial<TaskFields>, versions: VersionCondition = 'any') {
      const set = definedEntries(fields);
      // `completed_at`: untouched without `completed`, else coalesce(…, now()) or a parameter (null).
      const { completed } = fields;
      const completedAtShape = completed === undefined ? 'untouched' : completed ? 'set' : 'cleared';
      const shape = JSON.stringify(['update', set.map(([column]) => column), completedAtShape, versionShape(versions)]);
      const parameters = [
        ...set.map(([, value]) => value),
        ...(completedAtShape === 'cleared' ? [null] : []),
        owner,
        id,
        ...versionParameters(versions),
      ];
      return first(await compiledOnce(db, shape, parameters, () => updateQuery(id, fields, versions)));
    },

    /** Deletes the task if it is the owner's and its version satisfies `versions`. */
    async remove(id: string, versions: VersionCondition = 'any'): Promise<boolean> {
      const shape = JSON.stringify(['remove', versionShape(versions)]);
      const parameters = [owner, id, ...versionParameters(versions)];
      const result = await compiledOnce(db, shape, parameters, () => removeQuery(id, versions));
      return (result.numAffectedRows ?? 0n) > 0n;
    },

    async counts(): Promise<{ total: number; completed: number }> {
      const row = await db
        .selectFrom('tasks')
        .$call(ownedBy)
        .select((eb) => [
          eb.fn.countAll<string | number>().as('total'),
          sql<string | number>`count(*) filter (where completed)`.as('completed'),
        ])
        .executeTakeFirstOrThrow();
      // int8 arrives as a string from pg and as a number from PGlite.
      return { total: Number(row.total), completed: Number(row.completed) };
    },
  };
}
