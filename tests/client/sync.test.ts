// @tasks-api/client's sync: the text/event-stream parser against the WHATWG standard, and
// pullChanges, resync and subscribe against a loopback server speaking the change feed's protocol
// (chunks split anywhere, clean ends, 503 with Retry-After, 410, stalls, aborts).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import {
  createTasksClient,
  isChangesTokenExpired,
  ProblemError,
  pullChanges,
  resync,
  subscribe,
  type Change,
  type Session,
  type ChangePage,
  type ChangeTokenStore,
  type Snapshot,
  type SubscribeOptions,
  type SubscriptionStatus,
  type Task,
} from '../../packages/client/src/index.js';
import { createSSEParser, type ServerSentEvent } from '../../packages/client/src/sse.js';

const encode = (text: string) => new TextEncoder().encode(text);

/** Parses `chunks` (bytes or text) fed one after the other: the events and the retry values. */
function parse(chunks: (string | Uint8Array)[]) {
  const events: ServerSentEvent[] = [];
  const retries: number[] = [];
  const feed = createSSEParser({ onEvent: (event) => events.push(event), onRetry: (ms) => retries.push(ms) });
  for (const chunk of chunks) feed(typeof chunk === 'string' ? encode(chunk) : chunk);
  return { events, retries };
}

const message = (data: string, id = '', event = 'message'): ServerSentEvent => ({ id, event, data });

describe('createSSEParser (WHATWG text/event-stream)', () => {
  it('joins data lines with line feeds (the standard’s first example)', () => {
    expect(parse(['data: YHOO\ndata: +2\ndata: 10\n\n']).events).toEqual([message('YHOO\n+2\n10')]);
  });

  it('skips comments, keeps the last event id, resets it with an empty id, drops an unfinished event', () => {
    const stream = ': test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n';
    expect(parse([stream]).events).toEqual([message('first event', '1'), message('second event', '')]);
    // The id stays until the server sets another.
    expect(parse(['id: 7\ndata: a\n\ndata: b\n\n']).events).toEqual([message('a', '7'), message('b', '7')]);
  });

  it('dispatches a field without a colon as an empty value, and an event with empty data', () => {
    expect(parse(['data\n\ndata\ndata\n\ndata:']).events).toEqual([message(''), message('\n')]);
  });

  it('removes one space after the colon, not two; a blank line without data dispatches nothing', () => {
    expect(parse(['data:test\n\ndata: test\n\ndata:  test\n\n\n\n']).events).toEqual([
      message('test'),
      message('test'),
      message(' test'),
    ]);
  });

  it('ends lines with CRLF, LF or CR, mixed', () => {
    const { events } = parse(['event: change\r\ndata: a\rdata: b\ndata: c\r\n\rid: 2\rdata: d\r\r']);
    expect(events).toEqual([message('a\nb\nc', '', 'change'), message('d', '2')]);
  });

  it('a CRLF split between two chunks is one line end, a CR at a chunk end is one already', () => {
    expect(parse(['data: a\r', '\ndata: b\r', '\n\r', '\n']).events).toEqual([message('a\nb')]);
    expect(parse(['data: a\r', '\r', 'data: b\n\n']).events).toEqual([message('a'), message('b')]);
    expect(parse(['data: a\r', '', '\n', '\n']).events).toEqual([message('a')]);
  });

  it('sets the event type, "message" when it is empty or absent, and resets it after each event', () => {
    expect(parse(['event: change\ndata: 1\n\nevent:\ndata: 2\n\ndata: 3\n\n']).events).toEqual([
      message('1', '', 'change'),
      message('2'),
      message('3'),
    ]);
  });

  it('ignores an id containing NUL, unknown fields and a field named with a leading space', () => {
    expect(parse(['id: 1\n\nid: 2\0x\ndata: a\nfoo: bar\n data: no\n\n']).events).toEqual([message('a', '1')]);
  });

  it('reports a retry of digits only', () => {
    const { events, retries } = parse(['retry: 1500\n\nretry: 1a\nretry:\nretry: -5\nretry: 2.5\nretry:20\n\n']);
    expect(retries).toEqual([1500, 20]);
    expect(events).toEqual([]);
  });

  it('ignores one leading byte order mark, only at the start', () => {
    expect(parse(['\uFEFFdata: a\n\n\uFEFFdata: b\n\n']).events).toEqual([message('a')]);
    expect(parse([new Uint8Array([0xef, 0xbb]), new Uint8Array([0xbf]), 'data: a\n\n']).events).toEqual([message('a')]);
  });

  it('decodes UTF-8 split across chunks, and invalid bytes as U+FFFD', () => {
    const bytes = encode('data: é€😀\n\n');
    const oneByOne = [...bytes].map((byte) => new Uint8Array([byte]));
    expect(parse(oneByOne).events).toEqual([message('é€😀')]);
    expect(parse([new Uint8Array([0x64, 0x61, 0x74, 0x61, 0x3a, 0xff, 0x0a, 0x0a])]).events).toEqual([
      message('\uFFFD'),
    ]);
  });

  it('gives the same events wherever the chunks are cut (every split in two and three, and byte by byte)', () => {
    const stream = encode(
      'retry: 1000\r\n\r\n: heartbeat\n\nid: tok-1\nevent: change\ndata: {"title":"café 😀"}\r\n\r' +
        'data: two\rdata: lines\n\nid: tok-3\r\nevent: change\r\ndata: x\r\n\r\n',
    );
    const whole = parse([stream]);
    expect(whole.events).toEqual([
      message('{"title":"café 😀"}', 'tok-1', 'change'),
      message('two\nlines', 'tok-1'),
      message('x', 'tok-3', 'change'),
    ]);
    expect(whole.retries).toEqual([1000]);
    for (let i = 0; i <= stream.length; i++) {
      expect(parse([stream.subarray(0, i), stream.subarray(i)])).toEqual(whole);
      for (let j = i; j <= stream.length; j += 7)
        expect(parse([stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)])).toEqual(whole);
    }
    expect(parse([...stream].map((byte) => new Uint8Array([byte])))).toEqual(whole);
  });
});

// ---------------------------------------------------------------------------------------------
// A loopback server speaking the change feed's protocol, one handler per test.

interface Seen {
  path: string;
  query: URLSearchParams;
  lastEventId: string | undefined;
  authorization: string | undefined;
  at: number;
}

type Handler = (request: IncomingMessage, response: ServerResponse, seen: Seen) => void | Promise<void>;

const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function fakeApi(handler: Handler) {
  const seen: Seen[] = [];
  const server = createServer((request, response) => {
    const url = new URL(request.url!, 'http://127.0.0.1');
    const entry: Seen = {
      path: url.pathname,
      query: url.searchParams,
      lastEventId: request.headers['last-event-id'] as string | undefined,
      authorization: request.headers.authorization,
      at: Date.now(),
    };
    seen.push(entry);
    void handler(request, response, entry);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  servers.push({ close });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const api = createTasksClient({ baseUrl, token: 'T' });
  return { api, baseUrl, seen, streams: () => seen.filter((s) => s.path === '/api/v1/changes/stream') };
}

const token = (n: number) => `tok-${String(n).padStart(20, '0')}`;
const task = (n: number): Task => ({
  id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  title: `Task ${n} ✓`,
  description: null,
  completed: false,
  priority: 'medium',
  due_at: null,
  tags: [],
  created_at: '2026-11-21T08:29:00.000Z',
  updated_at: '2026-11-21T08:29:00.000Z',
  completed_at: null,
  version: 1,
});
const upsert = (n: number): Change => ({ op: 'upsert', token: token(n), task: task(n) });
const frame = (change: Change) => `id: ${change.token}\nevent: change\ndata: ${JSON.stringify(change)}\n\n`;

function json(response: ServerResponse, body: unknown): void {
  response.writeHead(200, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify(body));
}

function problem(response: ServerResponse, status: number, type: string, headers: Record<string, string> = {}) {
  response.writeHead(status, { 'Content-Type': 'application/problem+json', ...headers });
  response.end(JSON.stringify({ type, title: `Status ${status}`, status, detail: 'from the test', request_id: 'r' }));
}

function openStream(response: ServerResponse, retryMs = 20): void {
  response.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store' });
  response.write(`retry: ${retryMs}\n\n`);
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await delay(5);
  }
}

/** A store the test reads, starting at `initial`. */
function memory(initial: string | null = null) {
  const writes: string[] = [];
  const store: ChangeTokenStore = {
    get: async () => initial,
    set: async (value) => {
      writes.push(value);
    },
  };
  return { store, writes };
}

/** subscribe() recording what it delivers, with short intervals. */
function record(api: ReturnType<typeof createTasksClient>, options: Partial<SubscribeOptions> = {}) {
  const changes: Change[] = [];
  const statuses: SubscriptionStatus[] = [];
  const errors: { error: unknown; retryInMs: number | undefined }[] = [];
  const subscription = subscribe(api, {
    retryMs: 20,
    maxRetryMs: 200,
    stallTimeoutMs: 300,
    onChange: (change) => {
      changes.push(change);
    },
    onStatus: (status) => statuses.push(status),
    onError: (error, retryInMs) => errors.push({ error, retryInMs }),
    ...options,
  });
  return { subscription, changes, statuses, errors };
}

describe('pullChanges', () => {
  it('follows has_more, passing each next_token as since, with the limit', async () => {
    const pages: Record<string, ChangePage> = {
      [token(0)]: { changes: [upsert(1), upsert(2)], next_token: token(2), has_more: true },
      [token(2)]: { changes: [upsert(3)], next_token: token(3), has_more: false },
    };
    const { api, seen } = await fakeApi((request, response, { query }) => json(response, pages[query.get('since')!]));
    const got: ChangePage[] = [];
    for await (const page of pullChanges(api, { since: token(0), limit: 2 })) got.push(page);
    expect(got).toEqual([pages[token(0)], pages[token(2)]]);
    expect(seen.map((s) => [s.path, s.query.get('since'), s.query.get('limit'), s.authorization])).toEqual([
      ['/api/v1/changes', token(0), '2', 'Bearer T'],
      ['/api/v1/changes', token(2), '2', 'Bearer T'],
    ]);
  });

  it('without since asks once, for the token of now', async () => {
    const { api, seen } = await fakeApi((request, response) =>
      json(response, { changes: [], next_token: token(9), has_more: false }),
    );
    const got: ChangePage[] = [];
    for await (const page of pullChanges(api)) got.push(page);
    expect(got).toEqual([{ changes: [], next_token: token(9), has_more: false }]);
    expect(seen[0]!.query.has('since')).toBe(false);
    expect(seen[0]!.query.has('limit')).toBe(false);
  });

  it('a token past retention throws the 410 ProblemError isChangesTokenExpired recognizes', async () => {
    const { api } = await fakeApi((request, response) =>
      problem(response, 410, 'urn:tasks-api:problem:changes-token-expired'),
    );
    const failure = await pullChanges(api, { since: token(0) })
      .next()
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ProblemError);
    expect(isChangesTokenExpired(failure)).toBe(true);
    if (isChangesTokenExpired(failure)) expect(failure.problem.status).toBe(410);
    const gone = { type: 'about:blank', title: 'Gone', status: 410, detail: '', request_id: 'r' };
    expect(isChangesTokenExpired(new ProblemError(gone, new Response()))).toBe(false);
  });
});

/** The routes of a resync: the token of now, then the tasks in two pages. */
function resyncRoutes(response: ServerResponse, seen: Seen, now: number): boolean {
  if (seen.path === '/api/v1/changes' && !seen.query.has('since')) {
    json(response, { changes: [], next_token: token(now), has_more: false });
    return true;
  }
  if (seen.path === '/api/v1/tasks') {
    const cursor = seen.query.get('cursor');
    json(response, cursor ? { items: [task(3)], next_cursor: null } : { items: [task(1), task(2)], next_cursor: 'c2' });
    return true;
  }
  return false;
}

describe('resync', () => {
  it('takes the token before listing every task, page after page', async () => {
    const { api, seen } = await fakeApi((request, response, s) => void resyncRoutes(response, s, 50));
    await expect(resync(api)).resolves.toEqual({ token: token(50), tasks: [task(1), task(2), task(3)] });
    expect(seen.map((s) => `${s.path}?${s.query.toString()}`)).toEqual([
      '/api/v1/changes?',
      '/api/v1/tasks?limit=100',
      '/api/v1/tasks?limit=100&cursor=c2',
    ]);
  });
});

describe('subscribe', () => {
  it('delivers changes cut anywhere into chunks, and resumes with Last-Event-ID after the server ends the stream', async () => {
    const { api, streams } = await fakeApi(async (request, response, seen) => {
      if (seen.lastEventId === token(0)) {
        openStream(response, 30);
        // Two events and a heartbeat, cut inside a field name, a CRLF, a UTF-8 character (✓ is three bytes).
        const bytes = encode(frame(upsert(1)) + ': heartbeat\r\n\r\n' + frame(upsert(2)));
        const check = bytes.indexOf(0xe2);
        const crlf = bytes.indexOf(0x0d);
        let from = 0;
        for (const cut of [3, check + 1, check + 2, crlf + 1, bytes.length - 1, bytes.length]) {
          response.write(bytes.subarray(from, cut));
          from = cut;
          await delay(3);
        }
        return void response.end();
      }
      if (seen.lastEventId === token(2)) {
        openStream(response, 30);
        response.write(frame(upsert(3)));
        return; // stays open
      }
      problem(response, 500, 'about:blank');
    });
    const { store, writes } = memory(token(0));
    const { subscription, changes, statuses, errors } = record(api, { store });
    await until(() => changes.length === 3);
    subscription.unsubscribe();
    await expect(subscription.closed).resolves.toBeUndefined();

    expect(changes).toEqual([upsert(1), upsert(2), upsert(3)]);
    expect(writes).toEqual([token(1), token(2), token(3)]);
    expect(streams().map((s) => [s.lastEventId, s.authorization])).toEqual([
      [token(0), 'Bearer T'],
      [token(2), 'Bearer T'],
    ]);
    // The server advised 30 ms: the client waited that long after the end (and at most half more).
    expect(streams()[1]!.at - streams()[0]!.at).toBeGreaterThanOrEqual(29);
    expect(errors).toEqual([]);
    expect(statuses).toEqual(['connecting', 'open', 'waiting', 'connecting', 'open', 'closed']);
  });

  it('without a stored token starts from now: takes a token first, then streams from it', async () => {
    const { api, seen } = await fakeApi((request, response, s) => {
      if (s.path === '/api/v1/changes') return json(response, { changes: [], next_token: token(7), has_more: false });
      openStream(response);
      response.write(frame(upsert(8)));
    });
    const { store, writes } = memory();
    const { subscription, changes } = record(api, { store });
    await until(() => changes.length === 1);
    subscription.unsubscribe();
    await subscription.closed;
    expect(seen.map((s) => [s.path, s.lastEventId])).toEqual([
      ['/api/v1/changes', undefined],
      ['/api/v1/changes/stream', token(7)],
    ]);
    expect(writes).toEqual([token(7), token(8)]);
  });

  it('waits Retry-After after a 503, then goes on', async () => {
    const { api, streams } = await fakeApi((request, response) => {
      if (streams().length === 1)
        return problem(response, 503, 'urn:tasks-api:problem:overloaded', { 'Retry-After': '1' });
      openStream(response);
      response.write(frame(upsert(1)));
    });
    const { subscription, changes, errors, statuses } = record(api, { store: memory(token(0)).store });
    await until(() => changes.length === 1);
    subscription.unsubscribe();
    await subscription.closed;
    expect(streams().map((s) => s.lastEventId)).toEqual([token(0), token(0)]);
    expect(streams()[1]!.at - streams()[0]!.at).toBeGreaterThanOrEqual(990);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error).toMatchObject({ name: 'ProblemError', status: 503 });
    expect(errors[0]!.retryInMs).toBeGreaterThanOrEqual(1000);
    expect(statuses.slice(0, 3)).toEqual(['connecting', 'waiting', 'connecting']);
  });

  it('backs off after network errors, resuming from the last change applied', async () => {
    const { api, streams } = await fakeApi((request, response) => {
      openStream(response);
      if (streams().length === 1) response.write(frame(upsert(1)));
      if (streams().length <= 3) return void setTimeout(() => response.destroy(), 10);
      response.write(frame(upsert(2)));
    });
    const { subscription, changes, errors } = record(api, { store: memory(token(0)).store });
    await until(() => changes.length === 2);
    subscription.unsubscribe();
    await subscription.closed;
    expect(changes).toEqual([upsert(1), upsert(2)]);
    expect(streams().map((s) => s.lastEventId)).toEqual([token(0), token(1), token(1), token(1)]);
    expect(errors).toHaveLength(3);
    for (const { retryInMs } of errors) expect(retryInMs).toBeGreaterThanOrEqual(10);
  });

  it('on 410 resyncs into onResync, then streams from the token taken before the list', async () => {
    const { api, seen } = await fakeApi((request, response, s) => {
      if (resyncRoutes(response, s, 60)) return;
      if (s.lastEventId === token(0)) return problem(response, 410, 'urn:tasks-api:problem:changes-token-expired');
      openStream(response);
      response.write(frame(upsert(61)));
    });
    const { store, writes } = memory(token(0));
    const snapshots: Snapshot[] = [];
    const { subscription, changes, statuses, errors } = record(api, {
      store,
      onResync: (snapshot) => {
        snapshots.push(snapshot);
      },
    });
    await until(() => changes.length === 1);
    subscription.unsubscribe();
    await subscription.closed;
    expect(snapshots).toEqual([{ token: token(60), tasks: [task(1), task(2), task(3)] }]);
    expect(writes).toEqual([token(60), token(61)]);
    expect(seen.map((s) => [s.path, s.lastEventId ?? s.query.get('cursor')])).toEqual([
      ['/api/v1/changes/stream', token(0)],
      ['/api/v1/changes', null],
      ['/api/v1/tasks', null],
      ['/api/v1/tasks', 'c2'],
      ['/api/v1/changes/stream', token(60)],
    ]);
    expect(statuses).toEqual(['connecting', 'resyncing', 'connecting', 'open', 'closed']);
    expect(errors).toEqual([]);
  });

  it('on a 422 for its stored token (another user’s) resyncs like a 410', async () => {
    const { api, seen } = await fakeApi((request, response, s) => {
      if (resyncRoutes(response, s, 60)) return;
      if (s.lastEventId === token(0)) {
        response.writeHead(422, { 'Content-Type': 'application/problem+json' });
        response.end(
          JSON.stringify({
            type: 'urn:tasks-api:problem:validation-failed',
            title: 'Validation failed',
            status: 422,
            detail: 'The change token is not valid.',
            request_id: 'r',
            errors: [{ in: 'header', pointer: '/Last-Event-ID', detail: 'is not a token this API issued to you' }],
          }),
        );
        return;
      }
      openStream(response);
      response.write(frame(upsert(61)));
    });
    const { store, writes } = memory(token(0));
    const { subscription, changes } = record(api, { store, onResync: () => undefined });
    await until(() => changes.length === 1);
    subscription.unsubscribe();
    await subscription.closed;
    expect(writes).toEqual([token(60), token(61)]);
    expect(seen.at(-1)).toMatchObject({ path: '/api/v1/changes/stream', lastEventId: token(60) });
  });

  it('without onResync a 410 stops it, rejecting closed with the problem', async () => {
    const { api, streams } = await fakeApi((request, response) =>
      problem(response, 410, 'urn:tasks-api:problem:changes-token-expired'),
    );
    const { subscription, errors, statuses } = record(api, { store: memory(token(0)).store });
    const failure = await subscription.closed.catch((error: unknown) => error);
    expect(isChangesTokenExpired(failure)).toBe(true);
    expect(errors).toEqual([{ error: failure, retryInMs: undefined }]);
    expect(statuses.at(-1)).toBe('closed');
    await delay(100);
    expect(streams()).toHaveLength(1);
  });

  it('a 401 stops it (the client already tried its refresh), and so does an onChange that throws', async () => {
    const refused = await fakeApi((request, response) => problem(response, 401, 'urn:tasks-api:problem:unauthorized'));
    const first = record(refused.api, { store: memory(token(0)).store });
    await expect(first.subscription.closed).rejects.toMatchObject({ name: 'ProblemError', status: 401 });

    const { api, streams } = await fakeApi((request, response) => {
      openStream(response);
      response.write(frame(upsert(1)) + frame(upsert(2)));
    });
    const broken = new Error('the database is full');
    const { store, writes } = memory(token(0));
    const second = record(api, {
      store,
      onChange: () => {
        throw broken;
      },
    });
    await expect(second.subscription.closed).rejects.toBe(broken);
    expect(writes).toEqual([]); // not applied: delivered again next time
    expect(second.errors).toEqual([{ error: broken, retryInMs: undefined }]);
    expect(streams()).toHaveLength(1);
  });

  it('goes through the client: a 401 is answered by the session’s refresh and one retry', async () => {
    const { baseUrl, streams } = await fakeApi((request, response, seen) => {
      if (seen.authorization !== 'Bearer fresh') return problem(response, 401, 'urn:tasks-api:problem:unauthorized');
      openStream(response);
      response.write(frame(upsert(1)));
    });
    let access = 'stale';
    const session: Pick<Session, 'accessToken' | 'renew'> = {
      accessToken: async () => access,
      renew: async () => (access = 'fresh'),
    };
    const api = createTasksClient({ baseUrl, session: session as Session });
    const { subscription, changes, errors } = record(api, { store: memory(token(0)).store });
    await until(() => changes.length === 1);
    subscription.unsubscribe();
    await subscription.closed;
    expect(streams().map((s) => [s.authorization, s.lastEventId])).toEqual([
      ['Bearer stale', token(0)],
      ['Bearer fresh', token(0)],
    ]);
    expect(errors).toEqual([]);
  });

  it('reconnects a stalled stream, and heartbeats keep a quiet one alive', async () => {
    const { api, streams } = await fakeApi((request, response) => {
      openStream(response);
      if (streams().length === 1) {
        response.write(frame(upsert(1)));
        return; // then silence
      }
      response.write(frame(upsert(2)));
      const beat = setInterval(() => response.write(': heartbeat\n\n'), 50);
      response.on('close', () => clearInterval(beat));
    });
    const { subscription, changes, errors } = record(api, { store: memory(token(0)).store, stallTimeoutMs: 400 });
    await until(() => changes.length === 2);
    await delay(900); // more than two stall timeouts of heartbeats only
    subscription.unsubscribe();
    await subscription.closed;
    expect(streams().map((s) => s.lastEventId)).toEqual([token(0), token(1)]);
    expect(streams()[1]!.at - streams()[0]!.at).toBeGreaterThanOrEqual(390);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error).toMatchObject({ name: 'TimeoutError' });
  });

  it('reconnects when the response headers never come', async () => {
    const { api, streams } = await fakeApi((request, response) => {
      if (streams().length === 1) return; // never answers
      openStream(response);
      response.write(frame(upsert(1)));
    });
    const { subscription, changes, errors } = record(api, { store: memory(token(0)).store, stallTimeoutMs: 150 });
    await until(() => changes.length === 1);
    subscription.unsubscribe();
    await subscription.closed;
    expect(streams()).toHaveLength(2);
    expect(errors[0]!.error).toMatchObject({ name: 'TimeoutError' });
  });

  it('an aborted signal stops it at once, open or waiting: no more requests, no more changes', async () => {
    const open = await fakeApi((request, response) => {
      openStream(response);
      response.write(frame(upsert(1)));
      setTimeout(() => response.write(frame(upsert(2))), 100);
    });
    const controller = new AbortController();
    const live = record(open.api, { store: memory(token(0)).store, signal: controller.signal });
    await until(() => live.changes.length === 1);
    controller.abort();
    await expect(live.subscription.closed).resolves.toBeUndefined();
    await delay(200);
    expect(live.changes).toHaveLength(1);
    expect(open.streams()).toHaveLength(1);
    expect(live.statuses.at(-1)).toBe('closed');

    const busy = await fakeApi((request, response) => problem(response, 503, 'about:blank', { 'Retry-After': '30' }));
    const waiting = record(busy.api, { store: memory(token(0)).store });
    await until(() => waiting.statuses.includes('waiting'));
    const started = Date.now();
    waiting.subscription.unsubscribe();
    await waiting.subscription.closed;
    expect(Date.now() - started).toBeLessThan(100);
    expect(busy.streams()).toHaveLength(1);

    const aborted = AbortSignal.abort();
    const never = await fakeApi((request, response) => problem(response, 500, 'about:blank'));
    await record(never.api, { signal: aborted }).subscription.closed;
    expect(never.seen).toHaveLength(0);
  });
});
