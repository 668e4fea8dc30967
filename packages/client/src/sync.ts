import type { components } from './api.js';
import type { TasksClient } from './client.js';
import { paginate } from './paginate.js';
import { ProblemError } from './problem.js';
import { createSSEParser, type ServerSentEvent } from './sse.js';

/** One change of one of your tasks: `upsert` (the task as it is now) or `delete` (its tombstone). */
export type Change = components['schemas']['Change'];
/** An answer of `GET /api/v1/changes`: `{ changes, next_token, has_more }`. */
export type ChangePage = components['schemas']['ChangePage'];
/** A deleted task, as a `delete` change carries it: `{ id, version, deleted_at }`. */
export type TaskTombstone = components['schemas']['TaskTombstone'];
/** The 410 problem of a change token older than the history the server keeps. */
export type ChangesTokenExpiredProblem = components['schemas']['ChangesTokenExpiredProblem'];
type Task = components['schemas']['Task'];

/** Every task, and the change token taken just before they were listed: follow the feed from it. */
export interface Snapshot {
  token: string;
  tasks: Task[];
}

/**
 * Whether `error` is the 410 of a change token past the server's retention: the feed cannot say
 * what changed since, so list everything again ({@link resync}) and go on from the new token.
 */
export function isChangesTokenExpired(error: unknown): error is ProblemError<ChangesTokenExpiredProblem> {
  return error instanceof ProblemError && error.type === 'urn:tasks-api:problem:changes-token-expired';
}

async function changePage(
  api: TasksClient,
  since: string | null | undefined,
  limit: number | undefined,
  signal: AbortSignal | undefined,
): Promise<ChangePage> {
  const { data, error, response } = await api.GET('/api/v1/changes', {
    params: { query: { since: since ?? undefined, limit } },
    signal,
  });
  if (!data) throw ProblemError.from(response, error);
  return data;
}

/** The options of {@link pullChanges}. */
export interface PullChangesOptions {
  /** The token you kept (the last page's `next_token`, or the last change's `token`). Without one: a single empty page whose `next_token` is now. */
  since?: string | null;
  /** The most changes per page (1 to 1000; the server's default is 100). */
  limit?: number;
  signal?: AbortSignal;
}

/**
 * The pages of changes after `since`, oldest first, asking again while `has_more` is true.
 * Apply each page's `changes`, then keep its `next_token` (even when it has none: it keeps your
 * position inside the server's retention):
 * `for await (const page of pullChanges(api, { since })) { apply(page.changes); await save(page.next_token) }`.
 * A failing page throws a {@link ProblemError}; a 410 is one {@link isChangesTokenExpired} recognizes.
 */
export async function* pullChanges(
  api: TasksClient,
  { since, limit, signal }: PullChangesOptions = {},
): AsyncGenerator<ChangePage, void, undefined> {
  let page: ChangePage;
  do {
    page = await changePage(api, since, limit, signal);
    yield page;
    since = page.next_token;
  } while (page.has_more);
}

/**
 * Every task, with the change token taken before listing them: the start of a sync, and the way
 * back after a 410. A change made while the list is read comes again from the token; applying
 * it twice is harmless.
 */
export async function resync(api: TasksClient, { signal }: { signal?: AbortSignal } = {}): Promise<Snapshot> {
  const { next_token: token } = await changePage(api, undefined, undefined, signal);
  const tasks: Task[] = [];
  for await (const task of paginate(api, '/api/v1/tasks', { params: { query: { limit: 100 } }, signal }))
    tasks.push(task);
  return { token, tasks };
}

/**
 * Where a subscription keeps the id of the last change applied, sync or async. In a browser:
 * `{ get: () => localStorage.getItem('tasks-sync'), set: (token) => localStorage.setItem('tasks-sync', token) }`.
 */
export interface ChangeTokenStore {
  get(): string | null | undefined | Promise<string | null | undefined>;
  set(token: string): void | Promise<void>;
}

/** What a subscription is doing; `closed` is its last. */
export type SubscriptionStatus = 'connecting' | 'open' | 'resyncing' | 'waiting' | 'closed';

/** The options of {@link subscribe}. */
export interface SubscribeOptions {
  /** Applies one change (awaited; the next comes after). Its token is stored once it returns. A throw stops the subscription. */
  onChange: (change: Change) => void | Promise<void>;
  /** Where the position is kept (default: memory). Without a stored token the subscription starts with `onResync`, or from now. */
  store?: ChangeTokenStore;
  /**
   * Replaces everything you hold with `snapshot.tasks` (awaited): called when the store has no
   * token, and after a 410. Without it, a subscription with no token starts from now, and a 410 stops it.
   */
  onResync?: (snapshot: Snapshot) => void | Promise<void>;
  /** Each change of what it is doing (e.g. to show whether the copy is live: `open`). */
  onStatus?: (status: SubscriptionStatus) => void;
  /** Every failure: `retryInMs` when the subscription tries again, `undefined` when it stops with it. */
  onError?: (error: unknown, retryInMs: number | undefined) => void;
  /** Aborting it unsubscribes. */
  signal?: AbortSignal;
  /** The reconnection delay until the server advises one with `retry:`, and the least backoff (default 1000). */
  retryMs?: number;
  /** The longest backoff after failures (default 30000). A `Retry-After` is honoured even when longer. */
  maxRetryMs?: number;
  /** Reconnect when nothing, not even a heartbeat, came for this long (default 45000: three heartbeats). */
  stallTimeoutMs?: number;
}

/** A running subscription. */
export interface Subscription {
  /** Stops at once: the open request is aborted, no other is made, no change is delivered. */
  readonly unsubscribe: () => void;
  /** Resolves once it stopped by `unsubscribe()` or the signal; rejects with the error that stopped it otherwise. */
  readonly closed: Promise<void>;
}

// What the application's callbacks or store threw, or an event that is not JSON: trying again
// would meet it again, so the subscription stops with it.
class Fatal extends Error {
  constructor(readonly error: unknown) {
    super('a callback of subscribe() threw');
  }
}
const own = async <T>(call: () => T | Promise<T>): Promise<T> => {
  try {
    return await call();
  } catch (error) {
    throw new Fatal(error);
  }
};

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
    if (signal.aborted) done();
  });

// `Retry-After` (seconds or an HTTP date) in milliseconds.
function retryAfter(response: Response): number | undefined {
  const value = response.headers.get('Retry-After')?.trim();
  if (!value) return undefined;
  const ms = /^[0-9]+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isNaN(ms) ? undefined : Math.max(0, ms);
}

/**
 * Follows your task changes live over `GET /api/v1/changes/stream`, read with `fetch` through
 * `api` (so its token or session authenticates it, refreshed on 401). Each change goes to
 * `onChange` in order, then its id to `store`; every reconnection resumes with `Last-Event-ID`,
 * so nothing is lost or repeated. It reconnects after the server ends the stream (waiting what
 * `retry:` advises), after network errors and 5xx (exponential backoff with jitter, capped), after
 * 429 and 503 (at least `Retry-After`), and when nothing came for `stallTimeoutMs`. A 410 runs a
 * {@link resync} into `onResync` and goes on from its token. It stops on `unsubscribe()`, the
 * signal, an error trying again cannot fix (401 after the session's refresh, 403, a 410 or a 422
 * for its token without `onResync`), or a throw from one of its callbacks. With `onResync`, a
 * stored token the server refuses as not yours (422) is resynced like an expired one.
 */
export function subscribe(api: TasksClient, options: SubscribeOptions): Subscription {
  const { store = memoryStore(), onChange, onResync, onStatus, onError, signal } = options;
  const { retryMs = 1000, maxRetryMs = 30_000, stallTimeoutMs = 45_000 } = options;
  const stop = new AbortController();
  const unsubscribe = () => stop.abort();
  signal?.addEventListener('abort', unsubscribe);
  if (signal?.aborted) stop.abort();

  let position: string | undefined; // the id of the last change applied (or a snapshot's token): where to resume
  let advised: number | undefined; // the reconnection time the server advised (`retry:`)
  let failures = 0; // since a stream last opened: the backoff's exponent
  const backoff = () => {
    const ceiling = Math.min(maxRetryMs, Math.max(retryMs, advised ?? 0) * 2 ** Math.min(failures++, 30));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  };
  const stall = () => new DOMException(`nothing came for ${stallTimeoutMs} ms`, 'TimeoutError');
  // How long to wait before trying again after `error`; `undefined` when trying again cannot help.
  const delayAfter = (error: unknown): number | undefined => {
    if (!(error instanceof ProblemError)) return backoff(); // the network, a stall, a broken stream
    if (error.status === 429 || error.status === 503) return Math.max(retryAfter(error.response) ?? 0, backoff());
    if (error.status === 408 || error.status >= 500) return backoff();
    return undefined;
  };

  // A token to start from: a snapshot's (through `onResync`), else now's.
  async function start(): Promise<string> {
    let token: string;
    if (onResync) {
      onStatus?.('resyncing');
      const snapshot = await resync(api, { signal: stop.signal });
      if (stop.signal.aborted) return snapshot.token;
      await own(() => onResync(snapshot));
      token = snapshot.token;
    } else {
      token = (await changePage(api, undefined, undefined, stop.signal)).next_token;
    }
    await own(() => store.set(token));
    return token;
  }

  // One connection, from `since` until the server ends it, moving `position` along.
  async function stream(since: string): Promise<void> {
    const connection = new AbortController();
    const abort = () => connection.abort();
    stop.signal.addEventListener('abort', abort);
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let stalled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        connection.abort();
        reader?.cancel().catch(() => undefined); // in case the fetch given ignores signals
      }, stallTimeoutMs);
    };
    try {
      onStatus?.('connecting');
      watch();
      const { data, error, response } = await api.GET('/api/v1/changes/stream', {
        params: { header: { 'Last-Event-ID': since } },
        parseAs: 'stream',
        signal: connection.signal,
      });
      if (!response.ok) throw ProblemError.from(response, error);
      if (!data || !/^text\/event-stream\b/i.test(response.headers.get('Content-Type') ?? '')) {
        await data?.cancel().catch(() => undefined);
        throw new TypeError(`GET /api/v1/changes/stream answered ${response.status} without an event stream`);
      }
      onStatus?.('open');
      const events: ServerSentEvent[] = [];
      const feed = createSSEParser({ onEvent: (event) => events.push(event), onRetry: (ms) => (advised = ms) });
      reader = data.getReader();
      let received = false;
      try {
        for (;;) {
          watch();
          const { done, value } = await reader.read();
          clearTimeout(timer);
          if (stalled) throw stall();
          if (done || stop.signal.aborted) break;
          if (!received) failures = 0;
          received = true;
          feed(value);
          for (const event of events.splice(0)) {
            if (event.event !== 'change' || stop.signal.aborted) continue;
            const change = await own(() => JSON.parse(event.data) as Change);
            await own(() => onChange(change));
            const token = event.id || change.token;
            await own(() => store.set(token));
            position = token;
          }
        }
      } finally {
        await reader.cancel().catch(() => undefined);
      }
      if (!received && !stop.signal.aborted) throw new TypeError('the change stream ended before sending anything');
    } catch (error) {
      throw stalled ? stall() : error;
    } finally {
      clearTimeout(timer);
      stop.signal.removeEventListener('abort', abort);
    }
  }

  async function run(): Promise<void> {
    position = (await own(() => store.get())) || undefined;
    while (!stop.signal.aborted) {
      let delay: number | undefined;
      try {
        position ??= await start();
        if (stop.signal.aborted) break;
        await stream(position);
        delay = advised ?? retryMs;
        delay += (Math.random() * delay) / 2; // the server ended it: come back as it advised, not all at once
      } catch (error) {
        if (stop.signal.aborted || error instanceof Fatal) throw error;
        if ((isChangesTokenExpired(error) || isForeignToken(error)) && onResync) {
          position = undefined; // start() resyncs: at once, unless 410s come again without a stream between
          delay = failures > 0 ? backoff() : 0;
          failures ||= 1;
        } else {
          delay = delayAfter(error);
          if (delay === undefined) throw error;
          onError?.(error, delay);
        }
      }
      if (stop.signal.aborted) break;
      if (delay > 0) {
        onStatus?.('waiting');
        await sleep(delay, stop.signal);
      }
    }
  }

  const closed = run()
    .catch((error: unknown) => {
      if (stop.signal.aborted) return;
      const cause = error instanceof Fatal ? error.error : error;
      onError?.(cause, undefined);
      throw cause;
    })
    .finally(() => {
      stop.abort();
      signal?.removeEventListener('abort', unsubscribe);
      onStatus?.('closed');
    });
  closed.catch(() => undefined); // a rejection nobody awaits is not an unhandled one
  return { unsubscribe, closed };
}

/**
 * A 422 for the stored token itself (another user's, left in shared storage; or altered): like a
 * 410, nothing after it can be trusted, so a subscription with `onResync` starts over.
 */
function isForeignToken(error: unknown): boolean {
  return (
    error instanceof ProblemError &&
    error.status === 422 &&
    (error.problem as { errors?: { pointer?: string }[] }).errors?.some((e) => e.pointer === '/Last-Event-ID') === true
  );
}

function memoryStore(): ChangeTokenStore {
  let token: string | null = null;
  return {
    get: () => token,
    set: (value) => {
      token = value;
    },
  };
}
