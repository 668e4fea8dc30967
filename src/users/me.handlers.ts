import type { OwnerId } from '../auth/owner-id.js';
import type { Handlers } from '../http/handler.js';

export interface TaskCounts {
  total: number;
  pending: number;
  completed: number;
}

/** `GET /me`: the caller as the verified token describes them, with their task counts. */
export function meHandlers(deps: { countTasks: (owner: OwnerId) => Promise<TaskCounts> }): Handlers<'getMe'> {
  return {
    async getMe({ auth }) {
      return {
        status: 200,
        body: {
          sub: auth.sub,
          scopes: [...auth.scopes],
          roles: [...auth.roles],
          email: auth.email,
          name: auth.name,
          tasks: await deps.countTasks(auth.ownerId),
        },
      };
    },
  };
}
