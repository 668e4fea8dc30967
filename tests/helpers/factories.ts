import type { components } from '../../generated/api.js';

type TaskCreate = components['schemas']['TaskCreate'];

let counter = 0;

/** A valid new task; override what the test is about. */
export function buildTask(overrides: Partial<TaskCreate> = {}): TaskCreate {
  counter += 1;
  return {
    title: `Task ${counter}`,
    description: `Description of task ${counter}`,
    priority: 'medium',
    tags: ['test'],
    ...overrides,
  };
}
