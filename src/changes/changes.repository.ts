import { sql, type Kysely } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import type { TaskRow } from '../tasks/task.mapper.js';

/** One change as read: the task's row for an upsert, the tombstone's fields for a deletion. */
export type ChangeRow =
  | { seq: number; deleted: false; task: TaskRow }
  | { seq: number; deleted: true; task: { id: string; version: number; deleted_at: Date } };

/** What one read of the feed saw, all in one snapshot. */
export interface ChangesRead {
  /** The position of the owner's latest committed change (0 before the first). */
  head: number;
  /** The highest position whose history was pruned: a token below it may have missed a deletion. */
  prunedThrough: number;
  /** Up to `limit` changes after `since`, oldest first. */
  changes: ChangeRow[];
}

interface Row {
  head: string | number | null;
  pruned_through: string | number | null;
  seq: string | number | null;
  task_id: string | null;
  change_version: number | null;
  deleted_at: Date | null;
  id: string | null;
  title: string;
  description: string | null;
  completed: boolean;
  priority: TaskRow['priority'];
  due_at: Date | null;
  tags: string[];
  created_at: Date;
  updated_at: Date;
  completed_at: Date | null;
  version: number;
}

/**
 * The owner's changes after `since`, and the owner's head and pruning mark, in ONE statement: one
 * snapshot, so the pruning mark checked is the one the rows were read under (a prune committing
 * between two statements could otherwise remove a tombstone after the check passed), and the head
 * is one below which every change is visible (changes are numbered in commit order, migration
 * 0010). A change's task is the `tasks` row itself, in the same snapshot. `scoped` is the owner
 * scope's connection: row-level security shows this owner's rows only.
 */
export async function readChanges(
  scoped: Kysely<DB>,
  owner: OwnerId,
  since: number,
  limit: number,
): Promise<ChangesRead> {
  const { rows } = await sql<Row>`
    select h.seq as head, h.pruned_through, c.seq, c.task_id, c.version as change_version, c.deleted_at,
           t.id, t.title, t.description, t.completed, t.priority, t.due_at, t.tags, t.created_at, t.updated_at,
           t.completed_at, t.version
      from (select ${owner}::text as owner_id) o
      left join change_heads h on h.owner_id = o.owner_id
      left join lateral (
        select c.seq, c.task_id, c.version, c.deleted_at from task_changes c
         where c.owner_id = o.owner_id and c.seq > ${since}
         order by c.seq
         limit ${limit}
      ) c on true
      left join tasks t on t.owner_id = o.owner_id and t.id = c.task_id
     order by c.seq`.execute(scoped);
  const first = rows[0];
  const changes: ChangeRow[] = [];
  for (const row of rows) {
    if (row.seq === null || row.task_id === null) continue;
    const seq = Number(row.seq);
    if (row.deleted_at !== null) {
      changes.push({
        seq,
        deleted: true,
        task: { id: row.task_id, version: row.change_version ?? 1, deleted_at: row.deleted_at },
      });
    } else if (row.id !== null) {
      changes.push({ seq, deleted: false, task: row as TaskRow });
    }
  }
  return { head: Number(first?.head ?? 0), prunedThrough: Number(first?.pruned_through ?? 0), changes };
}
