import { sql, type Kysely, type RawBuilder, type WhereInterface } from 'kysely';
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

  return {
    pageQuery,
    page: (query: PageQuery) => pageQuery(query).execute(),

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

    find(id: string) {
      return db.selectFrom('tasks').select(taskColumns).$call(ownedBy).where('id', '=', id).executeTakeFirst();
    },

    insert(fields: TaskFields) {
      return db
        .insertInto('tasks')
        .values({ ...fields, owner_id: owner, completed_at: fields.completed ? sql<Date>`now()` : null })
        .returning(taskColumns)
        .executeTakeFirstOrThrow();
    },

    /**
     * Sets the given fields and bumps the version, if the task is the owner's and its version
     * satisfies `versions`; `completed_at` follows `completed`. The version is compared in the
     * UPDATE itself, so no concurrent change can slip between check and write.
     */
    update(id: string, fields: Partial<TaskFields>, versions: VersionCondition = 'any') {
      return db
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
        .returning(taskColumns)
        .executeTakeFirst();
    },

    /** Deletes the task if it is the owner's and its version satisfies `versions`. */
    async remove(id: string, versions: VersionCondition = 'any'): Promise<boolean> {
      const result = await db
        .deleteFrom('tasks')
        .$call(ownedBy)
        .where('id', '=', id)
        .$if(versions !== 'any', (qb) => qb.where('version', 'in', versions as number[]))
        .executeTakeFirst();
      return result.numDeletedRows > 0n;
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
