import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import type { Handlers } from '../http/handler.js';
import { taskService } from './tasks.service.js';

export type TaskOperation = 'listTasks' | 'createTask' | 'getTask' | 'updateTask' | 'replaceTask' | 'deleteTask';

/** HTTP for the tasks feature: statuses, `Location`, `Link`; the rest is the service's. */
export function taskHandlers(db: Kysely<DB>): Handlers<TaskOperation> {
  return {
    async listTasks({ auth, query, raw }) {
      const limit = query.limit ?? 20;
      const status = query.status ?? 'all';
      const page = await taskService(db, auth.ownerId).list({ limit, status, cursor: query.cursor });
      if (page.next_cursor === null) return { status: 200, body: page };
      const next = new URLSearchParams({ limit: String(limit), status, cursor: page.next_cursor });
      return { status: 200, body: page, headers: { Link: `<${raw.baseUrl}${raw.path}?${next}>; rel="next"` } };
    },

    async createTask({ auth, body, raw }) {
      const task = await taskService(db, auth.ownerId).create(body);
      return { status: 201, body: task, headers: { Location: `${raw.baseUrl}${raw.path}/${task.id}` } };
    },

    getTask: async ({ auth, path }) => ({ status: 200, body: await taskService(db, auth.ownerId).get(path.taskId) }),

    updateTask: async ({ auth, path, body }) => ({
      status: 200,
      body: await taskService(db, auth.ownerId).update(path.taskId, body),
    }),

    replaceTask: async ({ auth, path, body }) => ({
      status: 200,
      body: await taskService(db, auth.ownerId).replace(path.taskId, body),
    }),

    async deleteTask({ auth, path }) {
      await taskService(db, auth.ownerId).remove(path.taskId);
      return { status: 204 };
    },
  };
}
