import type { components } from '../../generated/api.js';

type Change = components['schemas']['Change'];

/** One Server-Sent Event as a test reads it. */
export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/**
 * A change stream read the way a client reads it: fetch, then the body parsed into events (and
 * comments, counted) as they arrive. `next()` waits for the next event, `ended` resolves when the
 * server ends the response.
 */
export interface SseReader {
  response: Response;
  /** The next event, waiting up to `ms` for it (rejects after). */
  next(ms?: number): Promise<SseEvent>;
  /** Every event received so far (`next` hands them out in order). */
  received: SseEvent[];
  /** Comment lines received (heartbeats). */
  comments: string[];
  /** `retry:` values received. */
  retries: number[];
  /** Resolves when the body ends (the server closed the stream), rejects if the connection is cut. */
  ended: Promise<void>;
  close(): void;
}

export async function openStream(url: string, headers: Record<string, string>): Promise<SseReader> {
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const received: SseEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  let handed = 0;
  let waiting: (() => void) | undefined;
  const ended = (async () => {
    if (!response.body || !response.headers.get('content-type')?.startsWith('text/event-stream')) return;
    const decoder = new TextDecoder();
    let buffer = '';
    let event: SseEvent = { data: '' };
    let hasData = false;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (hasData) received.push({ ...event, data: event.data.replace(/\n$/, '') });
            event = { data: '' };
            hasData = false;
            waiting?.();
          } else if (line.startsWith(':')) comments.push(line.slice(1).trim());
          else {
            const colon = line.indexOf(':');
            const field = line.slice(0, colon);
            const value = line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') {
              event.data += `${value}\n`;
              hasData = true;
            } else if (field === 'id') event.id = value;
            else if (field === 'event') event.event = value;
            else if (field === 'retry') retries.push(Number(value));
          }
        }
      }
    } finally {
      waiting?.();
    }
  })();
  let done = false;
  const finished = () => {
    done = true;
  };
  ended.then(finished, finished);
  return {
    response,
    received,
    comments,
    retries,
    ended,
    async next(ms = 5000) {
      const deadline = Date.now() + ms;
      while (handed >= received.length) {
        if (done) throw new Error('the stream ended');
        if (Date.now() > deadline) throw new Error(`no event within ${ms} ms`);
        await new Promise<void>((resolve) => {
          waiting = resolve;
          setTimeout(resolve, 50);
        });
      }
      return received[handed++]!;
    },
    close: () => abort.abort(),
  };
}

/** An event's data as the change it carries. */
export const changeOf = (event: SseEvent): Change => JSON.parse(event.data) as Change;
