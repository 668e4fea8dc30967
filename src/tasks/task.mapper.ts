import type { Selectable } from 'kysely';
import type { components } from '../../generated/api.js';
import type { TasksTable } from '../db/schema.js';
import { taskColumns } from './tasks.repository.js';

export type Task = components['schemas']['Task'];
export type TaskRow = Pick<Selectable<TasksTable>, (typeof taskColumns)[number]>;

const iso = (value: Date | null): string | null => (value === null ? null : value.toISOString());

/** A row as the API shows it: ISO timestamps, no owner. */
export function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    completed: row.completed,
    priority: row.priority,
    due_at: iso(row.due_at),
    tags: row.tags,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    completed_at: iso(row.completed_at),
    version: row.version,
  };
}
