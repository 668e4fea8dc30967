import type { Kysely } from 'kysely';
import type { components } from '../../generated/api.js';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { TaskNotFound } from './errors.js';
import { toTask, type Task } from './task.mapper.js';
import { tasksOf, type TaskFields } from './tasks.repository.js';

type Schemas = components['schemas'];
export type TaskStatusFilter = 'all' | 'pending' | 'completed';

const trimmed = <T extends { title?: string }>(fields: T): T =>
  fields.title === undefined ? fields : { ...fields, title: fields.title.trim() };

/** The tasks feature for one owner: API shapes in and out, rows never leave. */
export function taskService(db: Kysely<DB>, owner: OwnerId) {
  const tasks = tasksOf(db, owner);

  async function found(id: string, row: Parameters<typeof toTask>[0] | undefined): Promise<Task> {
    if (!row) throw new TaskNotFound(id);
    return toTask(row);
  }

  return {
    /** One page, newest first; the cursor is bound to the filter it was issued for. */
    async list(query: { limit: number; status: TaskStatusFilter; cursor?: string }): Promise<Schemas['TaskPage']> {
      const filter = `status=${query.status}`;
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, filter);
      const rows = await tasks.page({
        limit: query.limit + 1,
        completed: query.status === 'all' ? undefined : query.status === 'completed',
        after,
      });
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      return {
        items: page.map(toTask),
        next_cursor: rows.length > query.limit && last ? encodeCursor({ createdAt: last.created_at, id: last.id, filter }) : null,
      };
    },

    get: async (id: string) => found(id, await tasks.find(id)),

    create: async (input: Schemas['TaskCreate']) => toTask(await tasks.insert(trimmed(input))),

    /** JSON merge patch: only the fields present change; an empty patch changes nothing. */
    async update(id: string, patch: Schemas['TaskPatch']): Promise<Task> {
      if (Object.keys(patch).length === 0) return found(id, await tasks.find(id));
      return found(id, await tasks.update(id, trimmed(patch)));
    },

    /** The whole new state; what the body leaves out takes its default. */
    async replace(id: string, input: Schemas['TaskReplace']): Promise<Task> {
      const defaults: Required<Omit<TaskFields, 'title'>> = { description: null, completed: false, priority: 'medium', due_at: null, tags: [] };
      return found(id, await tasks.update(id, { ...defaults, ...trimmed(input) }));
    },

    async remove(id: string): Promise<void> {
      if (!(await tasks.remove(id))) throw new TaskNotFound(id);
    },

    async counts(): Promise<{ total: number; pending: number; completed: number }> {
      const { total, completed } = await tasks.counts();
      return { total, pending: total - completed, completed };
    },
  };
}
