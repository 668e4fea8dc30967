import type { Response } from 'express';
import type { OwnerId } from '../auth/owner-id.js';
import type { ChangesConfig } from '../config.js';
import type { Change } from './changes.service.js';
import type { ChangeSignals } from './signals.js';

/** The most changes read (and written as one chunk) at a time. */
const PAGE = 100;
const HEARTBEAT = Buffer.from(': heartbeat\n\n');

/** Reads up to `limit` changes after `position`: the feed's `after`, shared by the streams at one position. */
export type ReadChanges = (
  owner: OwnerId,
  position: number,
  limit: number,
) => Promise<{ changes: Change[]; position: number; hasMore: boolean }>;

/** Whether the process is shutting down, and a way to be told when it begins. */
export interface StreamStop {
  readonly aborted: boolean;
  /** Calls `end` when the shutdown begins; returns the way to take it back. */
  onStop(end: () => void): () => void;
}

/**
 * One listener on the shutdown signal for every open stream: an AbortSignal warns of a leak past
 * ten listeners, and a process holds a thousand streams.
 */
export function streamStop(signal: AbortSignal): StreamStop {
  const ends = new Set<() => void>();
  signal.addEventListener('abort', () => ends.forEach((end) => end()), { once: true });
  return {
    get aborted() {
      return signal.aborted;
    },
    onStop(end) {
      ends.add(end);
      return () => ends.delete(end);
    },
  };
}

/** One change as an event: its token as `id` (what `Last-Event-ID` sends back), the change as one line of JSON. */
const frame = (change: Change) => `id: ${change.token}\nevent: change\ndata: ${JSON.stringify(change)}\n\n`;

/**
 * The events of one stream, as the bytes to write: `retry:` and the changes after `position`
 * first (read before anything is sent, so a 410 or a database down is still a problem+json
 * answer), then each change as it commits, read from the history whenever `signals` says the
 * owner changed something, with a heartbeat comment when nothing happened for `heartbeatMs`.
 * Ends (the caller ends the response; the client reconnects with its last id) at `endAt`, when
 * `stop` is aborted (shutdown), or when a read fails after the start.
 */
export async function* changeEvents(options: {
  owner: OwnerId;
  position: number;
  read: ReadChanges;
  signals: ChangeSignals;
  config: Pick<ChangesConfig, 'heartbeatMs' | 'retryMs'>;
  endAt: number;
  stop: StreamStop;
}): AsyncGenerator<Buffer, void, undefined> {
  const { owner, read, signals, config, endAt, stop } = options;
  let position = options.position;
  let dirty = false;
  let beat = false;
  let wake: (() => void) | undefined;
  const poke = () => wake?.();
  const changed = () => {
    dirty = true;
    poke();
  };
  const unwatch = signals.watch(owner, changed);
  const heartbeat = setInterval(() => {
    beat = true;
    poke();
  }, config.heartbeatMs);
  const lifetime = setTimeout(poke, Math.max(0, endAt - Date.now()));
  const unstop = stop.onStop(poke);

  /** Every change after `position`, page by page, as chunks of events. */
  async function* catchUp(): AsyncGenerator<string> {
    for (;;) {
      const page = await read(owner, position, PAGE);
      position = page.position;
      if (page.changes.length > 0) yield page.changes.map(frame).join('');
      if (!page.hasMore || stop.aborted) return;
    }
  }

  try {
    // Watching already: a change committed from here on wakes this stream, so none falls between
    // this first read and the wait below.
    const page = await read(owner, position, PAGE);
    position = page.position;
    if (page.hasMore) dirty = true; // the rest once the first page is out (a wake-up meanwhile set it already)
    yield Buffer.from(`retry: ${config.retryMs}\n\n${page.changes.map(frame).join('')}`);
    for (;;) {
      if (stop.aborted || Date.now() >= endAt) return;
      if (dirty) {
        dirty = false;
        try {
          for await (const events of catchUp()) yield Buffer.from(events);
        } catch {
          return; // the database is down or the token went stale: the client reconnects and is told
        }
        continue;
      }
      if (beat) {
        beat = false;
        yield HEARTBEAT;
        continue;
      }
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    unwatch();
    clearInterval(heartbeat);
    clearTimeout(lifetime);
    unstop();
  }
}

/**
 * When a stream must end at the latest: its maximum lifetime, a tenth less at random so that
 * streams opened together (after a deploy) do not all reconnect together, and never after the
 * caller's token stops being usable.
 */
export function streamEnd(config: Pick<ChangesConfig, 'maxLifetimeMs'>, tokenUsableUntilMs?: number): number {
  const lifetime = config.maxLifetimeMs * (0.9 + Math.random() * 0.1);
  return Math.min(Date.now() + lifetime, tokenUsableUntilMs ?? Infinity);
}

/**
 * Cuts a stream whose client stopped reading: the events wait for the socket to drain, so a
 * client that reads nothing for two heartbeats (its buffers full all that time) is gone or
 * hostile, and one that outlives its end by a heartbeat is cut too. Memory stays bounded by the
 * socket's buffers either way.
 */
export function cutWhenStalled(res: Response, heartbeatMs: number, endAt: number): void {
  let stalled = false;
  const check = setInterval(() => {
    if (Date.now() > endAt + heartbeatMs || (stalled && res.writableNeedDrain)) res.destroy();
    stalled = res.writableNeedDrain;
  }, heartbeatMs);
  check.unref();
  res.once('close', () => clearInterval(check));
}

/**
 * `read` shared by concurrent callers at the same owner and position: a commit wakes every stream
 * of its owner at once, and those at the same position (all of them, usually) need one read.
 */
export function sharedReads(read: ReadChanges): ReadChanges {
  const inFlight = new Map<string, ReturnType<ReadChanges>>();
  return (owner, position, limit) => {
    const key = `${limit}:${position}:${owner}`;
    let pending = inFlight.get(key);
    if (pending === undefined) {
      pending = read(owner, position, limit).finally(() => inFlight.delete(key));
      inFlight.set(key, pending);
    }
    return pending;
  };
}
