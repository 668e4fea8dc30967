import type { Kysely } from 'kysely';
import type { components, operations } from '../../generated/api.js';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import { decodeCursor, pageOf, parseSort, queryFingerprint, type Sort } from '../http/paging.js';
import { PreconditionFailed, TaskNotFound } from './errors.js';
import { toTask, type Task } from './task.mapper.js';
import { tasksOf, type TaskFields, type VersionCondition } from './tasks.repository.js';
import { parseDateTime } from '../http/formats.js';

type Schemas = components['schemas'];
export type ListQuery = NonNullable<operations['listTasks']['parameters']['query']>;

/** The most tags `GET /tags` returns (the contract's maxItems). */
const TAG_LIST_LIMIT = 1000;

/** Fields as they are stored: the title trimmed, `due_at` as the UTC instant at millisecond precision. */
const trimmed = <T extends { title?: string; due_at?: string | null }>(fields: T): T => ({
  ...fields,
  ...(fields.title === undefined ? {} : { title: fields.title.trim() }),
  ...(typeof fields.due_at === 'string' ? { due_at: instant(fields.due_at).toISOString() } : {}),
});

/** A date-time the validator has accepted (so parseDateTime cannot refuse it) as a Date. */
const instant = (value: string): Date => parseDateTime(value)!;

/** The tasks feature for one owner: API shapes in and out, rows never leave. */
export function taskService(db: Kysely<DB>, owner: OwnerId) {
  const tasks = tasksOf(db, owner);

  async function found(id: string, row: Parameters<typeof toTask>[0] | undefined): Promise<Task> {
    if (!row) throw new TaskNotFound(id);
    return toTask(row);
  }

  /**
   * Runs a write guarded by an `If-Match` condition. When it touches nothing, tells the two
   * reasons apart afterwards: no such task (404), or a version If-Match does not name (412).
   */
  async function conditionally<T>(
    id: string,
    versions: VersionCondition,
    write: () => Promise<T | undefined>,
  ): Promise<T> {
    // An If-Match naming no version we could have can only fail: do not even try the write.
    const result = versions !== 'any' && versions.length === 0 ? undefined : await write();
    if (result !== undefined) return result;
    const current = await tasks.find(id);
    if (!current) throw new TaskNotFound(id);
    throw new PreconditionFailed(id, current.version);
  }

  return {
    /** One page in the requested order; the cursor is bound to the sort and filters it was issued for. */
    async list(query: ListQuery): Promise<Schemas['TaskPage']> {
      const limit = query.limit ?? 20;
      const sort = parseSort(query.sort ?? '-created_at');
      const status = query.status ?? 'all';
      const filters = {
        completed: status === 'all' ? undefined : status === 'completed',
        priorities: query.priority && [...new Set(query.priority)].sort(),
        tags: query.tag && [...new Set(query.tag)].sort(),
        dueBefore: query.due_before === undefined ? undefined : instant(query.due_before),
        dueAfter: query.due_after === undefined ? undefined : instant(query.due_after),
        text: query.q,
      };
      const fingerprint = queryFingerprint({ sort, ...filters });
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, fingerprint, sort);
      const rows = await tasks.page({ limit: limit + 1, sort, ...filters, after });
      return pageOf(rows, limit, fingerprint, toTask, (last) => ({ key: sortKeyOf(last, sort), id: last.id }));
    },

    tags: async (): Promise<Schemas['TagList']> => ({ items: await tasks.tagCounts(TAG_LIST_LIMIT) }),

    get: async (id: string) => found(id, await tasks.find(id)),

    create: async (input: Schemas['TaskCreate']) => toTask(await tasks.insert(trimmed(input))),

    /** JSON merge patch: only the fields present change; an empty patch changes nothing (not even the version). */
    update(id: string, patch: Schemas['TaskPatch'], versions: VersionCondition = 'any'): Promise<Task> {
      if (Object.keys(patch).length === 0) {
        return conditionally(id, versions, async () => {
          const row = await tasks.find(id);
          return row && (versions === 'any' || versions.includes(row.version)) ? row : undefined;
        }).then(toTask);
      }
      return conditionally(id, versions, () => tasks.update(id, trimmed(patch), versions)).then(toTask);
    },

    /** The whole new state; what the body leaves out takes its default. */
    replace(id: string, input: Schemas['TaskReplace'], versions: VersionCondition = 'any'): Promise<Task> {
      const defaults: Required<Omit<TaskFields, 'title'>> = {
        description: null,
        completed: false,
        priority: 'medium',
        due_at: null,
        tags: [],
      };
      return conditionally(id, versions, () => tasks.update(id, { ...defaults, ...trimmed(input) }, versions)).then(
        toTask,
      );
    },

    async remove(id: string, versions: VersionCondition = 'any'): Promise<void> {
      await conditionally(id, versions, async () => ((await tasks.remove(id, versions)) ? true : undefined));
    },

    async counts(): Promise<{ total: number; pending: number; completed: number }> {
      const { total, completed } = await tasks.counts();
      return { total, pending: total - completed, completed };
    },
  };
}

/**
 * A row's position in its sort, as text for the cursor: instants as ISO strings (exact to the
 * millisecond, like the columns), a missing due date as the infinity it sorts as, and rank and
 * lower-cased title as the database computed them (JavaScript's lower-casing is not PostgreSQL's).
 */
export function sortKeyOf(row: { sort_key: string; created_at: Date; due_at: Date | null }, sort: Sort): string {
  switch (sort.field) {
    case 'created_at':
      return row.created_at.toISOString();
    case 'due_at':
      return row.due_at?.toISOString() ?? (sort.direction === 'asc' ? 'infinity' : '-infinity');
    default:
      return row.sort_key;
  }
}
