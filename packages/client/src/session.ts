import createClient from 'openapi-fetch';
import type { components, paths } from './api.js';
import { ProblemError } from './problem.js';

/** What login, register and refresh answer: an access token, a refresh token and their lifetimes. */
export type TokenResponse = components['schemas']['TokenResponse'];
/** An existing account's email and password (login). */
export type Credentials = components['schemas']['Credentials'];
/** A new account's email and password (register). */
export type Registration = components['schemas']['Registration'];

/**
 * Where a session keeps its tokens, as one string (JSON). Synchronous or not. The default keeps
 * them in memory (gone on reload); in a browser, wrap `localStorage` or `sessionStorage`:
 * `{ get: () => localStorage.getItem('tasks'), set: (v) => localStorage.setItem('tasks', v), remove: () => localStorage.removeItem('tasks') }`.
 */
export interface SessionStorage {
  get(): string | null | undefined | Promise<string | null | undefined>;
  set(value: string): void | Promise<void>;
  remove(): void | Promise<void>;
}

export interface SessionOptions {
  /** The API's origin, e.g. `https://api.example.com`. */
  baseUrl: string;
  /** Where the tokens live (default: memory). */
  storage?: SessionStorage;
  /** The fetch to call the API with, given a Request (default: the global one, looked up at each call). */
  fetch?: (request: Request) => Promise<Response>;
  /**
   * Refresh this many seconds before the access token expires (default 30; never more than half
   * the token's lifetime).
   */
  refreshLeewaySeconds?: number;
  /**
   * Serializes refreshes between sessions sharing `storage` (browser tabs): default the Web Locks
   * API (`navigator.locks`) where there is one; `null` for none. Under the lock a session first
   * rereads storage, and adopts tokens another tab has just refreshed instead of spending the
   * refresh token again (the API would take a second use for theft and revoke the login).
   */
  locks?: SessionLocks | null;
}

/** The part of the Web Locks API (`navigator.locks`) a session uses. */
export interface SessionLocks {
  request(name: string, callback: (lock: unknown) => Promise<unknown>): Promise<unknown>;
}

/** A login on the API's built-in issuer, kept in `storage`, refreshed as it nears expiry. */
export interface Session {
  /** Logs in; the tokens are stored. Rejects with a ProblemError (401 wrong email or password, 429 throttled, 422…). */
  login(credentials: Credentials): Promise<TokenResponse>;
  /** Creates the account; the API logs it in (201 with tokens), so the tokens are stored. 409 when the email is taken. */
  register(registration: Registration): Promise<TokenResponse>;
  /**
   * Forgets the tokens (at once, whatever happens next) and revokes the login at the API. Rejects
   * when the revocation failed (the refresh token may then stay valid until it expires).
   */
  logout(): Promise<void>;
  /**
   * Exchanges the refresh token for a new pair and stores both (every refresh token works once).
   * Concurrent calls share one request. A refused refresh token (401) clears the session; either
   * way a failure rejects (ProblemError, or the network's error).
   */
  refresh(): Promise<TokenResponse>;
  /** The access token to send, refreshed first when it is about to expire; `undefined` when logged out. */
  accessToken(): Promise<string | undefined>;
  /** Whether tokens are stored. */
  isLoggedIn(): Promise<boolean>;
  /**
   * The token to retry with after the API refused `rejected` with 401: the stored one if it is
   * already another (a refresh happened meanwhile), else the result of one shared refresh;
   * `undefined` when there is none (logged out, or the refresh was refused and the session cleared).
   * The client calls this; applications rarely need to.
   */
  renew(rejected: string | undefined): Promise<string | undefined>;
}

/** What storage holds: the last token response, and when its access token expires. */
interface Stored extends TokenResponse {
  /** Epoch milliseconds. */
  expires_at: number;
}

function memoryStorage(): SessionStorage {
  let value: string | null = null;
  return {
    get: () => value,
    set: (v) => {
      value = v;
    },
    remove: () => {
      value = null;
    },
  };
}

/**
 * A session on the API's built-in issuer (`POST /api/v1/auth/…`). Pass it to
 * `createTasksClient({ baseUrl, session })`: requests carry its access token, and a 401 is
 * answered by one refresh and one retry.
 */
export function createSession({
  baseUrl,
  storage = memoryStorage(),
  fetch,
  refreshLeewaySeconds = 30,
  locks,
}: SessionOptions): Session {
  const api = createClient<paths>({ baseUrl, fetch: (request: Request) => (fetch ?? globalThis.fetch)(request) });
  let inflight: Promise<TokenResponse> | undefined;
  /** Bumped by logout, so that a refresh answering afterwards does not store tokens again. */
  let generation = 0;

  async function read(): Promise<Stored | undefined> {
    const raw = await storage.get();
    if (!raw) return undefined;
    try {
      const value = JSON.parse(raw) as Partial<Stored>;
      if (
        typeof value.access_token === 'string' &&
        typeof value.refresh_token === 'string' &&
        typeof value.expires_at === 'number' &&
        typeof value.expires_in === 'number'
      ) {
        return value as Stored;
      }
    } catch {
      // not ours, or damaged: treated as logged out
    }
    await storage.remove();
    return undefined;
  }

  async function store(tokens: TokenResponse): Promise<TokenResponse> {
    const stored: Stored = { ...tokens, expires_at: Date.now() + tokens.expires_in * 1000 };
    await storage.set(JSON.stringify(stored));
    return tokens;
  }

  const tokensOf = ({ expires_at: _, ...tokens }: Stored): TokenResponse => tokens;

  async function doRefresh(): Promise<TokenResponse> {
    const seen = await read();
    if (!seen) throw new Error('tasks-api session: not logged in');
    const lockManager =
      locks === undefined ? (globalThis as { navigator?: { locks?: SessionLocks } }).navigator?.locks : locks;
    if (!lockManager) return exchange(seen);
    return (await lockManager.request(`@tasks-api/client refresh ${baseUrl}`, async () => {
      const current = await read();
      if (!current) throw new Error('tasks-api session: not logged in');
      // Another session on this storage refreshed while this one waited: its tokens are ours.
      if (current.refresh_token !== seen.refresh_token) return tokensOf(current);
      return exchange(current);
    })) as TokenResponse;
  }

  /** Spends `current`'s refresh token on a new pair. */
  async function exchange(current: Stored): Promise<TokenResponse> {
    const started = generation;
    const { data, error, response } = await api.POST('/api/v1/auth/refresh', {
      body: { refresh_token: current.refresh_token },
    });
    if (data) {
      if (generation !== started) throw new Error('tasks-api session: logged out during the refresh');
      return store(data);
    }
    // A refused refresh token is final (used, revoked, expired): log out locally. Anything else
    // (429, 503, a proxy's 502) may pass, so the tokens stay.
    if (response.status === 401) {
      const now = await read();
      if (now?.refresh_token === current.refresh_token) await storage.remove();
    }
    throw ProblemError.from(response, error);
  }

  const session: Session = {
    async login(credentials) {
      const { data, error, response } = await api.POST('/api/v1/auth/login', { body: credentials });
      if (!data) throw ProblemError.from(response, error);
      generation++;
      return store(data);
    },

    async register(registration) {
      const { data, error, response } = await api.POST('/api/v1/auth/register', { body: registration });
      if (!data) throw ProblemError.from(response, error);
      generation++;
      return store(data);
    },

    async logout() {
      await inflight?.catch(() => undefined);
      generation++;
      const current = await read();
      await storage.remove();
      if (!current) return;
      const { error, response } = await api.POST('/api/v1/auth/logout', {
        body: { refresh_token: current.refresh_token },
      });
      if (!response.ok) throw ProblemError.from(response, error);
    },

    refresh() {
      inflight ??= doRefresh().finally(() => {
        inflight = undefined;
      });
      return inflight;
    },

    async accessToken() {
      const current = await read();
      if (!current) return undefined;
      const leeway = Math.min(refreshLeewaySeconds, current.expires_in / 2) * 1000;
      if (Date.now() < current.expires_at - leeway) return current.access_token;
      try {
        return (await session.refresh()).access_token;
      } catch (error) {
        const now = await read();
        if (!now) return undefined;
        if (Date.now() < now.expires_at) return now.access_token; // still valid: try it
        throw error;
      }
    },

    async isLoggedIn() {
      return (await read()) !== undefined;
    },

    async renew(rejected) {
      if (inflight) await inflight.catch(() => undefined);
      const current = await read();
      if (!current) return undefined;
      if (current.access_token !== rejected) return current.access_token;
      try {
        return (await session.refresh()).access_token;
      } catch {
        return undefined;
      }
    },
  };
  return session;
}
