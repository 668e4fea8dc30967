import type { ColumnType, Generated } from 'kysely';

/** Read as a Date; defaulted by the database on insert. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

/** The `tasks` table as Kysely sees it. */
export interface TasksTable {
  id: Generated<string>;
  owner_id: string;
  title: string;
  description: string | null;
  completed: Generated<boolean>;
  priority: Generated<'low' | 'medium' | 'high'>;
  due_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  tags: Generated<string[]>;
  created_at: Timestamp;
  updated_at: Timestamp;
  completed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface DB {
  tasks: TasksTable;
}
