import type { MaybeOptionalInit } from 'openapi-fetch';
import type { paths } from './api.js';
import type { TasksClient } from './client.js';
import { ProblemError } from './problem.js';

type PageOf<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { 'application/json': infer Page } } } };
}
  ? Page
  : never;

/** Every path whose GET answers a page: `{ items, next_cursor }` and takes `cursor`. */
export type PagedPath = {
  [P in keyof paths]: PageOf<P> extends { items: unknown[]; next_cursor: string | null }
    ? paths[P] extends { get: { parameters: { query?: { cursor?: string } } } }
      ? P
      : never
    : never;
}[keyof paths];

/** The type of one item of the pages `path` answers (Task, Attachment, Webhook, WebhookDelivery). */
export type PageItem<P extends PagedPath> = PageOf<P> extends { items: (infer Item)[] } ? Item : never;

/** The options of the first page's GET (parameters, signal…): later pages add `cursor`. */
export type PaginateInit<P extends PagedPath> = MaybeOptionalInit<paths[P], 'get'>;

/**
 * Every item of a paged list, page after page, following `next_cursor` until it is null:
 * `for await (const task of paginate(api, '/api/v1/tasks', { params: { query: { status: 'pending' } } }))`.
 * Works for tasks, a task's attachments, webhooks and a webhook's deliveries. A page that fails
 * throws a {@link ProblemError}; stopping the loop early requests no further page.
 */
export async function* paginate<P extends PagedPath>(
  api: TasksClient,
  path: P,
  ...[init]: undefined extends PaginateInit<P> ? [PaginateInit<P>?] : [PaginateInit<P>]
): AsyncGenerator<PageItem<P>, void, undefined> {
  const options = (init ?? {}) as { params?: { query?: Record<string, unknown> } & Record<string, unknown> } & Record<
    string,
    unknown
  >;
  let cursor = options.params?.query?.cursor as string | undefined;
  const get = api.GET as unknown as (
    path: string,
    init: unknown,
  ) => Promise<{ data?: { items: PageItem<P>[]; next_cursor: string | null }; error?: unknown; response: Response }>;
  do {
    const query = { ...options.params?.query, ...(cursor === undefined ? {} : { cursor }) };
    const { data, error, response } = await get(path, { ...options, params: { ...options.params, query } });
    if (!data) throw ProblemError.from(response, error);
    yield* data.items;
    cursor = data.next_cursor ?? undefined;
  } while (cursor !== undefined);
}
