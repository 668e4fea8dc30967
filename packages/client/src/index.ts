/**
 * @tasks-api/client: the typed client of tasks-api, generated from its OpenAPI contract.
 * Runs in browsers and Node ≥ 20.19: fetch, Headers, URL, ReadableStream, TextDecoder and crypto.randomUUID only.
 */
import type { components } from './api.js';

export type { components, operations, paths } from './api.js';
export { createTasksClient, type TasksClient, type TasksClientOptions } from './client.js';
export {
  createSession,
  type Credentials,
  type Registration,
  type Session,
  type SessionOptions,
  type SessionLocks,
  type SessionStorage,
  type TokenResponse,
} from './session.js';
export { paginate, type PagedPath, type PageItem, type PaginateInit } from './paginate.js';
export { ProblemError, unwrap, type AnyProblem, type Problem } from './problem.js';
export { etagOf, ifMatch } from './etag.js';
export {
  isChangesTokenExpired,
  pullChanges,
  resync,
  subscribe,
  type Change,
  type ChangePage,
  type ChangesTokenExpiredProblem,
  type ChangeTokenStore,
  type PullChangesOptions,
  type Snapshot,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionStatus,
  type TaskTombstone,
} from './sync.js';

/** A task as the API returns it. */
export type Task = components['schemas']['Task'];
/** A file attached to a task (its metadata). */
export type Attachment = components['schemas']['Attachment'];
/** A webhook endpoint (never its secret, shown once at creation). */
export type Webhook = components['schemas']['Webhook'];
