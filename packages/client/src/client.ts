import createClient, { type Client, type ClientOptions, type Middleware } from 'openapi-fetch';
import type { paths } from './api.js';
import { rememberETag } from './etag.js';
import type { Session } from './session.js';

/** The typed client: `api.GET('/api/v1/tasks', …)` with paths, parameters, bodies and responses checked. */
export type TasksClient = Client<paths>;

export interface TasksClientOptions extends Omit<ClientOptions, 'baseUrl' | 'fetch'> {
  /** The API's origin, e.g. `http://localhost:3000`. */
  baseUrl: string;
  /** A bearer token, or a function returning the current one (called for every request). Not with `session`. */
  token?: string | (() => string | null | undefined | Promise<string | null | undefined>);
  /**
   * A built-in-issuer session (createSession): requests carry its access token, and a 401 is
   * answered by one refresh (shared by all requests refused meanwhile) and one retry. Not with `token`.
   */
  session?: Session;
  /** The fetch to send with (default: the global one, looked up at each call). */
  fetch?: (request: Request) => Promise<Response>;
  /**
   * Send a fresh `Idempotency-Key` (crypto.randomUUID) with every POST to an operation that
   * accepts one, unless the call sets its own (default true). A retry by the client itself
   * (after a refresh) reuses the key, so it cannot create a second task.
   */
  idempotency?: boolean;
}

/**
 * The POST operations whose contract declares the `Idempotency-Key` header. Checked against the
 * generated types both ways below: the build fails when the contract adds or drops one.
 */
const IDEMPOTENT_POSTS = ['/api/v1/tasks'] as const satisfies readonly IdempotentPost[];

type IdempotentPost = {
  [P in keyof paths]: paths[P] extends { post: { parameters: { header?: infer H } } }
    ? [NonNullable<H>] extends [never]
      ? never
      : 'Idempotency-Key' extends keyof NonNullable<H>
        ? P
        : never
    : never;
}[keyof paths];
type Unlisted = Exclude<IdempotentPost, (typeof IDEMPOTENT_POSTS)[number]>;
const everyIdempotentPostListed: [Unlisted] extends [never] ? true : { unlisted: Unlisted } = true;
void everyIdempotentPostListed;

const idempotentPosts = new Set<string>(IDEMPOTENT_POSTS);
const SIGN_IN = /\/api\/v1\/auth\/[^/]+$/;

const bearer = (request: Request): string | undefined =>
  request.headers.get('Authorization')?.replace(/^Bearer /, '') || undefined;

/**
 * Creates a client whose paths, parameters, request bodies and responses are typed from the
 * OpenAPI document, so a frontend cannot call the API in a way the contract does not allow.
 * Every response body it parses is remembered with its ETag, for `ifMatch(body)`.
 */
export function createTasksClient({
  token,
  session,
  fetch,
  idempotency = true,
  ...options
}: TasksClientOptions): TasksClient {
  if (token !== undefined && session !== undefined)
    throw new TypeError('createTasksClient: pass token or session, not both');
  const send = (request: Request): Promise<Response> => (fetch ?? globalThis.fetch)(request);

  const client = createClient<paths>({
    ...options,
    // Sends what the middleware below built; with a session, a 401 is retried once with a
    // refreshed token: the request is cloned before it goes, so its body can go again, with the
    // same Idempotency-Key.
    fetch: async (request: Request) => {
      // The sign-in operations' 401s (a wrong password, a refused refresh token) are answers, not
      // an expired token.
      if (session === undefined || SIGN_IN.test(new URL(request.url).pathname)) return send(request);
      const again = request.clone();
      const response = await send(request);
      if (response.status !== 401) return response;
      const renewed = await session.renew(bearer(request));
      if (renewed === undefined) return response;
      await response.body?.cancel().catch(() => undefined);
      again.headers.set('Authorization', `Bearer ${renewed}`);
      return send(again);
    },
  });

  const middleware: Middleware = {
    async onRequest({ request, schemaPath }) {
      const value =
        session !== undefined ? await session.accessToken() : typeof token === 'function' ? await token() : token;
      if (value && !request.headers.has('Authorization')) request.headers.set('Authorization', `Bearer ${value}`);
      if (
        idempotency &&
        request.method === 'POST' &&
        idempotentPosts.has(schemaPath) &&
        !request.headers.has('Idempotency-Key')
      ) {
        request.headers.set('Idempotency-Key', globalThis.crypto.randomUUID());
      }
      return request;
    },
  };
  client.use(middleware);

  // Each method resolves as openapi-fetch's does, after remembering the body's ETag.
  const remember = <R extends { data?: unknown; response: Response }>(result: R): R => {
    rememberETag(result.data, result.response);
    return result;
  };
  return {
    ...client,
    request: ((method: never, url: never, ...init: never[]) =>
      client.request(method, url, ...init).then(remember)) as TasksClient['request'],
    GET: ((url: never, ...init: never[]) => client.GET(url, ...init).then(remember)) as TasksClient['GET'],
    PUT: ((url: never, ...init: never[]) => client.PUT(url, ...init).then(remember)) as TasksClient['PUT'],
    POST: ((url: never, ...init: never[]) => client.POST(url, ...init).then(remember)) as TasksClient['POST'],
    DELETE: ((url: never, ...init: never[]) => client.DELETE(url, ...init).then(remember)) as TasksClient['DELETE'],
    OPTIONS: ((url: never, ...init: never[]) => client.OPTIONS(url, ...init).then(remember)) as TasksClient['OPTIONS'],
    HEAD: ((url: never, ...init: never[]) => client.HEAD(url, ...init).then(remember)) as TasksClient['HEAD'],
    PATCH: ((url: never, ...init: never[]) => client.PATCH(url, ...init).then(remember)) as TasksClient['PATCH'],
    TRACE: ((url: never, ...init: never[]) => client.TRACE(url, ...init).then(remember)) as TasksClient['TRACE'],
  };
}
