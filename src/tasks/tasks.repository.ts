import { sql, type Kysely, type WhereInterface } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';

/** The columns the API shows; never `select *`, and never the owner. */
export const taskColumns = [
  'id', 'title', 'description', 'completed', 'priority', 'due_at', 'tags', 'created_at', 'updated_at', 'completed_at',
] as const;

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
  completed?: boolean;
  /** Rows strictly after this position in newest-first order. */
  after?: { createdAt: Date; id: string };
}

/**
 * All Kysely code of the tasks feature, for one owner. Every query starts from that owner's rows
 * through {@link ownedBy}; inserts take the owner from here, never from the caller's fields.
 */
export function tasksOf(db: Kysely<DB>, owner: OwnerId) {
  const ownedBy = <QB extends WhereInterface<DB, 'tasks'>>(qb: QB): QB => qb.where('tasks.owner_id', '=', owner) as QB;
  const completedAt = (completed: boolean | undefined) =>
    completed === undefined ? {} : { completed_at: completed ? sql<Date>`coalesce(completed_at, now())` : null };

  return {
    page({ limit, completed, after }: PageQuery) {
      return db
        .selectFrom('tasks')
        .select(taskColumns)
        .$call(ownedBy)
        .$if(completed !== undefined, (qb) => qb.where('completed', '=', completed!))
        .$if(after !== undefined, (qb) =>
          qb.where(sql<boolean>`(created_at, id) < (${after!.createdAt}::timestamptz, ${after!.id}::uuid)`),
        )
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
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

    /** Sets the given fields; `completed_at` follows `completed`. Undefined when the task is not the owner's. */
    update(id: string, fields: Partial<TaskFields>) {
      return db
        .updateTable('tasks')
        .set({ ...fields, ...completedAt(fields.completed), updated_at: sql<Date>`now()` })
        .$call(ownedBy)
        .where('id', '=', id)
        .returning(taskColumns)
        .executeTakeFirst();
    },

    async remove(id: string): Promise<boolean> {
      const result = await db.deleteFrom('tasks').$call(ownedBy).where('id', '=', id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    async counts(): Promise<{ total: number; completed: number }> {
      const row = await db
        .selectFrom('tasks')
        .$call(ownedBy)
        .select((eb) => [eb.fn.countAll<string | number>().as('total'), sql<string | number>`count(*) filter (where completed)`.as('completed')])
        .executeTakeFirstOrThrow();
      // int8 arrives as a string from pg and as a number from PGlite.
      return { total: Number(row.total), completed: Number(row.completed) };
    },
  };
}
