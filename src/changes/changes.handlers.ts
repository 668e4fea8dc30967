import type { AuthContext } from '../auth/auth-context.js';
import type { ChangesConfig } from '../config.js';
import { ServiceUnavailable } from '../errors/problem.js';
import { NO_STORE, StreamedBody, type Handlers } from '../http/handler.js';
import type { ChangeFeed, Since } from './changes.service.js';
import type { ChangeSignals } from './signals.js';
import { changeEvents, cutWhenStalled, sharedReads, streamEnd, streamStop } from './stream.js';

export type ChangeOperation = 'listChanges' | 'streamChanges';

/** What a stream's response carries besides its events: never cached, never buffered by a proxy (nginx honours X-Accel-Buffering). */
const STREAM_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'X-Accel-Buffering': 'no',
  ...NO_STORE,
};

/** HTTP for the change feed and its live stream; tokens, reads and 410s are the feed's. */
export function changeHandlers(deps: {
  feed: ChangeFeed;
  signals: ChangeSignals;
  config: Pick<ChangesConfig, 'heartbeatMs' | 'retryMs' | 'maxLifetimeMs'>;
  /** Aborted when the process begins to shut down: open streams end, new ones get 503. */
  shutdown: AbortSignal;
}): Handlers<ChangeOperation> {
  const { feed, signals, config } = deps;
  const shutdown = streamStop(deps.shutdown);
  const read = sharedReads((owner, position, limit) => feed.after(owner, position, limit));
  const positionOf = async (auth: AuthContext, since: Since | undefined) =>
    since === undefined ? feed.head(auth.ownerId) : feed.position(auth.ownerId, since);

  return {
    async listChanges({ auth, query }) {
      const owner = auth.ownerId;
      if (query.since === undefined) {
        const next_token = await feed.token(owner, await feed.head(owner));
        return { status: 200, body: { changes: [], next_token, has_more: false }, headers: NO_STORE };
      }
      const position = await feed.position(owner, { token: query.since, source: 'since' });
      const page = await feed.after(owner, position, query.limit ?? 100);
      const next_token = await feed.token(owner, page.position);
      return { status: 200, body: { changes: page.changes, next_token, has_more: page.hasMore }, headers: NO_STORE };
    },

    async streamChanges({ auth, query, raw }) {
      if (shutdown.aborted) throw new ServiceUnavailable('The server is shutting down; reconnect.');
      // EventSource sends the id of the last event it got when it reconnects, with the URL it first had.
      const lastEventId = raw.get('Last-Event-ID');
      const since: Since | undefined =
        lastEventId !== undefined
          ? { token: lastEventId, source: 'Last-Event-ID' }
          : query.since !== undefined
            ? { token: query.since, source: 'since' }
            : undefined;
      const position = await positionOf(auth, since);
      const endAt = streamEnd(config, auth.usableUntilMs);
      cutWhenStalled(raw.res!, config.heartbeatMs, endAt);
      return {
        status: 200,
        headers: STREAM_HEADERS,
        body: new StreamedBody(
          changeEvents({ owner: auth.ownerId, position, read, signals, config, endAt, stop: shutdown }),
        ),
      };
    },
  };
}
