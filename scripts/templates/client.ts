import createClient, { type Client, type ClientOptions } from 'openapi-fetch';
import type { components, operations, paths } from './api.js';

export type { components, operations, paths };
/** A task as the API returns it. */
export type Task = components['schemas']['Task'];
/** An RFC 9457 problem document, the body of every error response. */
export type Problem = components['schemas']['Problem'];
/** The typed client: `client.GET('/api/v1/tasks', …)` with paths, parameters and bodies checked. */
export type TasksClient = Client<paths>;

export interface TasksClientOptions extends ClientOptions {
  /** The API's origin, e.g. `http://localhost:3000`. */
  baseUrl: string;
  /** A bearer token, or a function returning the current one (called for every request). */
  token?: string | (() => string | undefined | Promise<string | undefined>);
}

/**
 * Creates a client whose paths, parameters, request bodies and responses are typed from the
 * OpenAPI document, so a frontend cannot call the API in a way the contract does not allow.
 */
export function createTasksClient({ token, ...options }: TasksClientOptions): TasksClient {
  const client = createClient<paths>(options);
  if (token !== undefined) {
    client.use({
      async onRequest({ request }) {
        const value = typeof token === 'function' ? await token() : token;
        if (value) request.headers.set('Authorization', `Bearer ${value}`);
        return request;
      },
    });
  }
  return client;
}
