// Compile-time tests, run by `npm run typecheck`: a client's error narrows by `status` and by
// `type`, because each error response of the contract says its status and its problem types
// (TaskNotFoundProblem, ValidationProblem, ...) rather than the one generic Problem.
import type { TasksClient } from '../../packages/client/src/index.js';

declare const api: TasksClient;

export async function createAndRead(): Promise<string> {
  const created = await api.POST('/api/v1/tasks', { body: { title: 'Buy milk' } });
  if (created.error) {
    if (created.error.status === 422) {
      // Only the 422's schema requires these: a validation problem always lists its fields.
      const fields: string[] = created.error.errors.map((e) => e.pointer);
      const total: number = created.error.errors_total;
      return `${fields.join(',')} of ${total}`;
    }
    if (created.error.status === 409) {
      const type: 'urn:tasks-api:problem:idempotency-key-in-use' = created.error.type;
      return type;
    }
    // @ts-expect-error createTask documents no 404
    if (created.error.status === 404) return 'never';
    return created.error.type;
  }
  const read = await api.GET('/api/v1/tasks/{taskId}', { params: { path: { taskId: created.data.id } } });
  if (read.error) {
    if (read.error.type === 'urn:tasks-api:problem:task-not-found') {
      const status: 404 = read.error.status;
      return String(status);
    }
    // @ts-expect-error getTask never answers a precondition failure
    if (read.error.type === 'urn:tasks-api:problem:precondition-failed') return 'never';
    return read.error.detail;
  }
  return read.data.title;
}

// `completed` has a server-side default, so a client may leave it out (openapi-typescript's
// default flags made it required while the schema carried `default: false`).
export const minimal = () => api.POST('/api/v1/tasks', { body: { title: 'x' } });
