import type { Kysely } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { DB } from '../db/schema.js';
import { etagOf, noneMatchHits, versionsMatching } from '../http/etag.js';
import type { Handlers } from '../http/handler.js';
import { pageWithLink } from '../http/paging.js';
import { idempotency } from '../idempotency/idempotency.js';
import type { Task } from './task.mapper.js';
import { taskService } from './tasks.service.js';

export type TaskOperation =
  'listTasks' | 'listTags' | 'createTask' | 'getTask' | 'updateTask' | 'replaceTask' | 'deleteTask';

/** HTTP for the tasks feature: statuses, `Location`, `Link`, ETags and preconditions, idempotent creation; the rest is the service's. */
export function taskHandlers(db: Kysely<DB>, asOwner: OwnerScope): Handlers<TaskOperation> {
  const idempotent = idempotency(db, asOwner);
  /** The caller's tasks, through the scope in which the database shows only their rows. */
  const tasksOf = <T>(owner: OwnerId, work: (tasks: ReturnType<typeof taskService>) => Promise<T>) =>
    asOwner(owner, (scoped) => work(taskService(scoped, owner)));
  const withEtag = (task: Task) => ({ status: 200 as const, body: task, headers: { ETag: etagOf(task.version) } });

  async function create(
    scoped: Kysely<DB>,
    owner: OwnerId,
    body: Parameters<ReturnType<typeof taskService>['create']>[0],
    tasksUrl: string,
  ) {
    const task = await taskService(scoped, owner).create(body);
    return {
      status: 201 as const,
      body: task,
      headers: { Location: `${tasksUrl}/${task.id}`, ETag: etagOf(task.version) },
    };
  }

  return {
    listTasks: async ({ auth, query, raw }) =>
      pageWithLink(raw, await tasksOf(auth.ownerId, (tasks) => tasks.list(query))),

    listTags: async ({ auth }) => ({ status: 200, body: await tasksOf(auth.ownerId, (tasks) => tasks.tags()) }),

    async createTask({ auth, body: sent, raw }) {
      // `completed` left out is false: the contract says so in words (a schema `default` would make
      // generated clients require the field), so the default is applied here, before the body is
      // hashed for idempotency, exactly as the validator applied it when the contract carried it.
      const body = { completed: false, ...sent };
      const tasksUrl = `${raw.baseUrl}${raw.path}`;
      const key = raw.get('Idempotency-Key');
      if (key === undefined) return asOwner(auth.ownerId, (scoped) => create(scoped, auth.ownerId, body, tasksUrl));
      const response = await idempotent.run(auth.ownerId, key, body, (trx) =>
        create(trx, auth.ownerId, body, tasksUrl),
      );
      return response as Awaited<ReturnType<typeof create>>;
    },

    async getTask({ auth, path, raw }) {
      const task = await tasksOf(auth.ownerId, (tasks) => tasks.get(path.taskId));
      if (noneMatchHits(raw.get('If-None-Match'), task.version))
        return { status: 304, headers: { ETag: etagOf(task.version) } };
      return withEtag(task);
    },

    updateTask: async ({ auth, path, body, raw }) =>
      withEtag(
        await tasksOf(auth.ownerId, (tasks) => tasks.update(path.taskId, body, versionsMatching(raw.get('If-Match')))),
      ),

    replaceTask: async ({ auth, path, body, raw }) =>
      withEtag(
        await tasksOf(auth.ownerId, (tasks) => tasks.replace(path.taskId, body, versionsMatching(raw.get('If-Match')))),
      ),

    async deleteTask({ auth, path, raw }) {
      await tasksOf(auth.ownerId, (tasks) => tasks.remove(path.taskId, versionsMatching(raw.get('If-Match'))));
      return { status: 204 };
    },
  };
}
