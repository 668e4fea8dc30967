import { HttpProblem } from '../errors/problem.js';

/** 404 for a task that does not exist and for another user's task alike. */
export class TaskNotFound extends HttpProblem {
  constructor(taskId: string) {
    super(404, 'TASK_NOT_FOUND', 'Task not found', `No task ${taskId} exists for this user.`);
  }
}

/** 412 when `If-Match` names a version the task no longer has (or none it could have). */
export class PreconditionFailed extends HttpProblem {
  constructor(taskId: string, currentVersion: number) {
    super(
      412,
      'PRECONDITION_FAILED',
      'Precondition failed',
      `Task ${taskId} is at "${currentVersion}", which If-Match does not name: it changed since you read it. Nothing was changed.`,
    );
  }
}
