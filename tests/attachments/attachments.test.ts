import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Agent, request as httpRequest } from 'node:http';
import pg from 'pg';
import type { BlobStore } from '../../src/attachments/blob-store.js';
import { postgresBlobStore } from '../../src/attachments/postgres-store.js';
import { sweepAttachments } from '../../src/attachments/sweep.js';
import { ownerScope } from '../../src/db/owner-scope.js';
import { startAttachmentServer, STORAGES, type AttachmentServer } from '../helpers/attachment-stores.js';
import { buildTask } from '../helpers/factories.js';
import { elf, html, nothingStored, pdf, png, sha256, storedFor, svg } from '../helpers/files.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

const KiB = 1024;
const LIMITS = { maxBytes: 512 * KiB, quotaBytes: 1280 * KiB, maxPerTask: 3 };

let server: TestServer;
let store: BlobStore;
let stored: AttachmentServer['stored'];

interface User {
  sub: string;
  token: string;
  auth: { Authorization: string };
}

async function newOwner(): Promise<User> {
  const sub = newUser();
  const token = await server.tokenFor(sub);
  return { sub, token, auth: { Authorization: `Bearer ${token}` } };
}

async function newTask(user: User): Promise<string> {
  const { data, response } = await server.client(user.token).POST('/api/v1/tasks', { body: buildTask() });
  expect(response.status).toBe(201);
  return data!.id;
}

const attachmentsUrl = (taskId: string) => `${server.url}/api/v1/tasks/${taskId}/attachments`;

/** A multipart upload as a browser's FormData sends it. */
function uploadForm(
  user: User,
  taskId: string,
  bytes: Buffer,
  filename: string,
  type: string,
  extra: Record<string, string> = {},
) {
  const form = new FormData();
  for (const [name, value] of Object.entries(extra)) form.append(name, value);
  form.append('file', new Blob([bytes], { type }), filename);
  return fetch(attachmentsUrl(taskId), { method: 'POST', headers: user.auth, body: form });
}

/** A raw upload: the body is the file. */
function uploadRaw(user: User, taskId: string, bytes: Buffer, type: string, disposition?: string) {
  return fetch(attachmentsUrl(taskId), {
    method: 'POST',
    headers: { ...user.auth, 'Content-Type': type, ...(disposition ? { 'Content-Disposition': disposition } : {}) },
    body: bytes,
  });
}

/** A multipart body written by hand, for the malformed ones no FormData makes. */
function handmade(user: User, taskId: string, body: string | Buffer, boundary = 'XyZ') {
  return fetch(attachmentsUrl(taskId), {
    method: 'POST',
    headers: { ...user.auth, 'Content-Type': `multipart/form-data; boundary=${boundary}` },
    body,
  });
}

const part = (name: string, value: string | Buffer, file?: { filename: string; type: string }) =>
  Buffer.concat([
    Buffer.from(
      `--XyZ\r\nContent-Disposition: form-data; name="${name}"${file ? `; filename="${file.filename}"\r\nContent-Type: ${file.type}` : ''}\r\n\r\n`,
    ),
    Buffer.isBuffer(value) ? value : Buffer.from(value),
    Buffer.from('\r\n'),
  ]);

/** A file part with no Content-Type header of its own (FormData always writes one). */
const untypedPart = (value: Buffer, filename: string) =>
  Buffer.concat([
    Buffer.from(`--XyZ\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n\r\n`),
    value,
    Buffer.from('\r\n'),
  ]);

// PGlite runs one transaction at a time, which hides races: the concurrency tests need the real server.
const onPostgres = process.env.TEST_DATABASE_URL ? it : it.skip;

/**
 * A PostgreSQL session of the test's own that takes row locks (`statement`) in a transaction and
 * holds them: requests that need those rows queue up behind it, all at the same point, until
 * `release()`. That makes a race happen every time instead of now and then.
 */
async function holdLocks(statement: string, values: unknown[]) {
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await client.connect();
  await client.query('begin');
  await client.query(statement, values);
  const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  const watcher = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await watcher.connect();
  return {
    /** Resolves once `count` sessions wait for this one, directly or queued behind each other. */
    async waiters(count: number) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const { rows } = await watcher.query<{ n: number }>(
          `with recursive waiting(pid) as (
             select pid from pg_stat_activity where $1 = any(pg_blocking_pids(pid))
             union
             select a.pid from pg_stat_activity a join waiting w on w.pid = any(pg_blocking_pids(a.pid))
           ) select count(*)::int as n from waiting`,
          [pid],
        );
        if (rows[0]!.n >= count) return;
        if (Date.now() > deadline) throw new Error(`only ${rows[0]!.n} of ${count} sessions came to wait`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async release() {
      await client.query('commit').catch(() => undefined);
      await client.end();
      await watcher.end();
    },
  };
}

/**
 * Holds the next `get` of `store` (patched in place) until `release()`: a download waits between
 * reading the attachment's metadata and reading its bytes, the window a delete can fall into.
 */
function holdNextRead(store: BlobStore) {
  const get = store.get.bind(store);
  let reached!: () => void;
  let release!: () => void;
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  store.get = (owner, blobId, range) => {
    store.get = get;
    return (async function* () {
      reached();
      await released;
      yield* get(owner, blobId, range);
    })();
  };
  return { arrived, release };
}

/**
 * The test server on `storage`, with `store` the very object the app reads through, so a test can
 * reach into it (holdNextRead). The S3 one is given to the app already; for PostgreSQL the app
 * would make its own, so it is given one too: the same store over the same owner scope.
 */
async function startServerWithItsStore(storage: (typeof STORAGES)[number]): Promise<AttachmentServer> {
  if (storage === 's3') return startAttachmentServer('s3', { attachments: LIMITS });
  // The store needs the server's database, which exists only once the server does.
  let inner: BlobStore | undefined;
  const store: BlobStore = {
    backend: 'postgres',
    put: (...args) => inner!.put(...args),
    get: (...args) => inner!.get(...args),
    remove: (...args) => inner!.remove(...args),
    sweep: (...args) => inner!.sweep(...args),
  };
  const started = await startServer({ attachments: LIMITS, blobStore: store });
  inner = postgresBlobStore(ownerScope(started.database));
  return {
    server: started,
    store,
    stored: (owner) => storedFor(started.database, owner),
    close: () => started.close(),
  };
}

async function problemOf(response: Response, status: number, type: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const problem = (await response.json()) as { type: string; detail: string };
  expect(problem.type).toBe(`urn:tasks-api:problem:${type}`);
  return problem;
}

describe.each(STORAGES)('attachments stored in %s', (storage) => {
  let running: AttachmentServer;
  beforeAll(async () => {
    running = await startServerWithItsStore(storage);
    ({ server, store } = running);
    stored = (owner) => running.stored(owner);
  });
  afterAll(() => running.close());

  describe('POST /api/v1/tasks/{taskId}/attachments', () => {
    it('stores a multipart upload and gives it back byte for byte, with its metadata and Location', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const bytes = png(300 * KiB);
      const response = await uploadForm(user, task, bytes, 'passport photo.png', 'image/png');
      expect(response.status).toBe(201);
      const attachment = (await response.json()) as Record<string, unknown> & { id: string };
      expect(attachment).toMatchObject({
        task_id: task,
        filename: 'passport photo.png',
        content_type: 'image/png',
        size: bytes.length,
        sha256: sha256(bytes),
      });
      expect(response.headers.get('location')).toBe(`/api/v1/attachments/${attachment.id}`);

      const meta = await fetch(`${server.url}${response.headers.get('location')}`, { headers: user.auth });
      expect(await meta.json()).toEqual(attachment);
      const download = await fetch(`${server.url}/api/v1/attachments/${attachment.id}/content`, { headers: user.auth });
      expect(download.status).toBe(200);
      expect(Buffer.from(await download.arrayBuffer()).equals(bytes)).toBe(true);
      expect(
        Object.fromEntries(
          [
            'content-type',
            'content-length',
            'etag',
            'accept-ranges',
            'x-content-type-options',
            'content-security-policy',
            'cache-control',
            'content-disposition',
          ].map((h) => [h, download.headers.get(h)]),
        ),
      ).toEqual({
        'content-type': 'image/png',
        'content-length': String(bytes.length),
        etag: `"${sha256(bytes)}"`,
        'accept-ranges': 'bytes',
        'x-content-type-options': 'nosniff',
        'content-security-policy': "sandbox; default-src 'none'",
        'cache-control': 'private, no-cache',
        'content-disposition': 'attachment; filename="passport photo.png"',
      });
      expect(await stored(user.sub)).toEqual({
        attachments: 1,
        blobs: 1,
        chunks: storage === 'postgres' ? 2 : 1,
        usedBytes: bytes.length,
      });
    });

    it('takes the raw bytes as the body, named by Content-Disposition (filename* in UTF-8 preferred)', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const bytes = pdf(20 * KiB);
      const response = await uploadRaw(
        user,
        task,
        bytes,
        'application/pdf',
        `attachment; filename="resume.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%9C%93.pdf`,
      );
      expect(response.status).toBe(201);
      const attachment = (await response.json()) as { id: string; filename: string; content_type: string };
      expect(attachment).toMatchObject({ filename: 'résumé ✓.pdf', content_type: 'application/pdf' });
      const download = await fetch(`${server.url}/api/v1/attachments/${attachment.id}/content`, { headers: user.auth });
      expect(download.headers.get('content-disposition')).toBe(
        `attachment; filename="r?sum? ?.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%9C%93.pdf`,
      );
      expect(Buffer.from(await download.arrayBuffer()).equals(bytes)).toBe(true);
    });

    it('decides the type from the bytes: application/octet-stream means "find out", text keeps its declared kind', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const unnamed = await uploadRaw(user, task, png(2 * KiB), 'application/octet-stream');
      expect(await unnamed.json()).toMatchObject({ content_type: 'image/png', filename: 'attachment' });
      const csv = await uploadForm(user, task, Buffer.from('name,due\nmilk,today\n'), 'list.csv', 'text/csv');
      const stored = (await csv.json()) as { id: string; content_type: string };
      expect(stored.content_type).toBe('text/csv');
      const download = await fetch(`${server.url}/api/v1/attachments/${stored.id}/content`, { headers: user.auth });
      expect(download.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    });

    it.each([
      ['a PNG declared as a PDF', () => png(), 'application/pdf', 415, 'file-type-mismatch'],
      ['HTML declared as plain text', html, 'text/plain', 415, 'file-type-mismatch'],
      // Raw, image/svg+xml is not among the upload's media types: the contract refuses it first.
      ['SVG, declared as such', svg, 'image/svg+xml', 415, 'file-type-refused', 'unsupported-media-type'],
      ['SVG declared as octet-stream', svg, 'application/octet-stream', 415, 'file-type-refused'],
      ['an executable declared as octet-stream', elf, 'application/octet-stream', 415, 'file-type-refused'],
      ['an executable declared as a PNG', elf, 'image/png', 415, 'file-type-mismatch'],
    ] as [string, () => Buffer, string, number, string, string?][])(
      'refuses %s, storing nothing',
      async (_name, bytes, type, status, problem, rawProblem = problem) => {
        const user = await newOwner();
        const task = await newTask(user);
        await problemOf(await uploadForm(user, task, bytes(), 'f', type), status, problem);
        await problemOf(await uploadRaw(user, task, bytes(), type), status, rawProblem);
        expect(await stored(user.sub)).toEqual(nothingStored);
      },
    );

    it('refuses a request media type that is no upload with 415 before reading it', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const response = await fetch(attachmentsUrl(task), {
        method: 'POST',
        headers: { ...user.auth, 'Content-Type': 'application/json' },
        body: '{"file":"x"}',
      });
      await problemOf(response, 415, 'unsupported-media-type');
    });

    it('cuts off a file over the per-file limit with 413, with or without a Content-Length, storing nothing', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const big = png(LIMITS.maxBytes + 1);
      const declared = await uploadRaw(user, task, big, 'image/png');
      expect((await problemOf(declared, 413, 'file-too-large')).detail).toContain(`${LIMITS.maxBytes} bytes`);
      // What the client still sends is read and thrown away: it reads the answer, the connection lives on.
      expect(declared.headers.get('connection')).toBe('keep-alive');
      await problemOf(await uploadForm(user, task, big, 'big.png', 'image/png'), 413, 'file-too-large');

      // Chunked, no length: the answer comes while the client is still sending (the body never ends).
      const answer = await new Promise<{ status: number; body: string; connection?: string }>((resolve, reject) => {
        const req = httpRequest(
          attachmentsUrl(task),
          { method: 'POST', headers: { ...user.auth, 'Content-Type': 'image/png', 'Transfer-Encoding': 'chunked' } },
          (res) => {
            let body = '';
            res.on('data', (piece) => (body += piece));
            res.on('end', () => resolve({ status: res.statusCode!, body, connection: res.headers.connection }));
            res.on('error', reject);
          },
        );
        req.on('error', () => undefined);
        req.write(big);
        req.write(randomTail());
      });
      expect(answer.status).toBe(413);
      expect((JSON.parse(answer.body) as { type: string }).type).toBe('urn:tasks-api:problem:file-too-large');

      // A declared length far over the limit: answered at once, before the body is read.
      const huge = await new Promise<{ status: number; connection?: string }>((resolve, reject) => {
        const req = httpRequest(
          attachmentsUrl(task),
          {
            method: 'POST',
            headers: { ...user.auth, 'Content-Type': 'image/png', 'Content-Length': String(1024 ** 3) },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }));
            res.on('error', reject);
          },
        );
        req.on('error', () => undefined);
        req.write(big.subarray(0, 1024));
      });
      expect(huge.status).toBe(413);
      expect(await stored(user.sub)).toEqual(nothingStored);
    });

    it('keeps each owner within the quota, stores the same file once, and frees it with its last attachment', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const other = await newTask(user);
      const first = png(500 * KiB);
      const a = (await (await uploadForm(user, task, first, 'a.png', 'image/png')).json()) as { id: string };
      const second = await uploadRaw(user, other, first, 'image/png');
      const b = (await second.json()) as { id: string };
      expect([second.status, b]).toEqual([201, expect.objectContaining({ sha256: sha256(first) })]);
      expect(await stored(user.sub)).toMatchObject({ attachments: 2, blobs: 1, usedBytes: first.length });
      await uploadForm(user, task, png(500 * KiB), 'b.png', 'image/png');
      const over = await problemOf(
        await uploadForm(user, task, png(400 * KiB), 'c.png', 'image/png'),
        413,
        'quota-exceeded',
      );
      expect(over.detail).toContain(`${LIMITS.quotaBytes - 2 * first.length} of ${LIMITS.quotaBytes} bytes are left`);

      // Deleting one copy keeps the bytes for the other; deleting both frees them.
      expect(
        (await fetch(`${server.url}/api/v1/attachments/${a.id}`, { method: 'DELETE', headers: user.auth })).status,
      ).toBe(204);
      const kept = await fetch(`${server.url}/api/v1/attachments/${b.id}/content`, { headers: user.auth });
      expect(Buffer.from(await kept.arrayBuffer()).equals(first)).toBe(true);
      expect(
        (await fetch(`${server.url}/api/v1/attachments/${b.id}`, { method: 'DELETE', headers: user.auth })).status,
      ).toBe(204);
      expect(await stored(user.sub)).toMatchObject({ attachments: 1, blobs: 1, usedBytes: 500 * KiB });
      expect((await fetch(`${server.url}/api/v1/attachments/${b.id}`, { headers: user.auth })).status).toBe(404);
    });

    it('answers a refused upload while its client still sends, and the connection serves the next request', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const agent = new Agent({ maxSockets: 1, keepAlive: true });
      const post = (path: string, body: Buffer) =>
        new Promise<{ status: number; socket: unknown }>((resolve, reject) => {
          const req = httpRequest(
            `${server.url}${path}`,
            {
              method: 'POST',
              agent,
              headers: { ...user.auth, 'Content-Type': 'image/png', 'Content-Length': body.length },
            },
            (res) => {
              res.resume();
              res.on('end', () => resolve({ status: res.statusCode!, socket: req.socket }));
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      const refused = await post(`/api/v1/tasks/${crypto.randomUUID()}/attachments`, png(3 * 1024 * KiB));
      const tooBig = await post(`/api/v1/tasks/${task}/attachments`, png(LIMITS.maxBytes * 4));
      const stored = await post(`/api/v1/tasks/${task}/attachments`, png(10 * KiB));
      expect([refused.status, tooBig.status, stored.status]).toEqual([404, 413, 201]);
      expect(stored.socket).toBe(refused.socket);
      agent.destroy();
    });

    it('refuses a file beyond the per-task count with 422', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      for (let i = 0; i < LIMITS.maxPerTask; i += 1)
        expect((await uploadRaw(user, task, Buffer.from(`note ${i}`), 'text/plain')).status).toBe(201);
      await problemOf(
        await uploadRaw(user, task, Buffer.from('one more'), 'text/plain'),
        422,
        'attachment-limit-reached',
      );
    });

    onPostgres(
      'never lets concurrent uploads pass the per-task limit: the task is locked before its attachments are counted',
      async () => {
        const user = await newOwner();
        const task = await newTask(user);
        expect((await uploadRaw(user, task, Buffer.from('already here'), 'text/plain')).status).toBe(201);
        // Four uploads, each with its bytes stored, all come to wait for the task's row at once: room for two.
        const held = await holdLocks('select id from tasks where id = $1 for update', [task]);
        let responses: Response[];
        try {
          const uploads = [1, 2, 3, 4].map((i) => uploadRaw(user, task, Buffer.from(`racer ${i}`), 'text/plain'));
          await held.waiters(4);
          await held.release();
          responses = await Promise.all(uploads);
        } finally {
          await held.release().catch(() => undefined);
        }
        expect(responses.map((r) => r.status).sort()).toEqual([201, 201, 422, 422]);
        for (const refused of responses.filter((r) => r.status === 422))
          await problemOf(refused, 422, 'attachment-limit-reached');
        expect(await stored(user.sub)).toMatchObject({ attachments: LIMITS.maxPerTask });
      },
    );

    onPostgres(
      'takes every one of concurrent uploads of the same new file near the quota: the first stores it, the others cost nothing',
      async () => {
        const user = await newOwner();
        const tasks = await Promise.all([1, 2, 3, 4].map(() => newTask(user)));
        const earlier = png(500 * KiB);
        expect((await uploadRaw(user, tasks[0]!, earlier, 'image/png')).status).toBe(201);
        // 780 KiB left: room for the new file once, not twice. Its four uploads (to four tasks, so
        // no task lock orders them) all come to wait for the owner's usage row at once.
        const file = png(500 * KiB);
        const held = await holdLocks('update attachment_usage set bytes = bytes where owner_id = $1', [user.sub]);
        let responses: Response[];
        try {
          const uploads = tasks.map((task) => uploadRaw(user, task, file, 'image/png'));
          await held.waiters(4);
          await held.release();
          responses = await Promise.all(uploads);
        } finally {
          await held.release().catch(() => undefined);
        }
        expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201]);
        expect(await stored(user.sub)).toMatchObject({
          attachments: 5,
          blobs: 2,
          usedBytes: earlier.length + file.length,
        });
      },
    );

    it('takes a file the owner already stores even when the quota has no room for it, since it costs nothing', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const other = await newTask(user);
      const first = png(500 * KiB);
      const second = png(500 * KiB);
      for (const bytes of [first, second]) expect((await uploadRaw(user, task, bytes, 'image/png')).status).toBe(201);
      // 280 KiB left: less than either file, declared (Content-Length) or not (multipart).
      const again = await uploadRaw(user, other, first, 'image/png');
      expect([again.status, await again.json()]).toEqual([201, expect.objectContaining({ sha256: sha256(first) })]);
      expect((await uploadForm(user, other, second, 'again.png', 'image/png')).status).toBe(201);
      expect(await stored(user.sub)).toMatchObject({
        attachments: 4,
        blobs: 2,
        usedBytes: first.length + second.length,
      });
      // A file that is not one of them still does not fit, read to its end or cut off past the largest stored file.
      expect(
        (await problemOf(await uploadRaw(user, other, png(400 * KiB), 'image/png'), 413, 'quota-exceeded')).detail,
      ).toContain(`${280 * KiB} of`);
      await problemOf(await uploadForm(user, other, png(510 * KiB), 'big.png', 'image/png'), 413, 'quota-exceeded');
      expect(await stored(user.sub)).toMatchObject({
        attachments: 4,
        blobs: 2,
        usedBytes: first.length + second.length,
      });
    });

    it('decides a multipart file part without a Content-Type from its bytes alone, as application/octet-stream', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const image = png(2 * KiB);
      const untyped = await handmade(
        user,
        task,
        Buffer.concat([part('filename', 'photo.png'), untypedPart(image, 'x.png'), Buffer.from('--XyZ--\r\n')]),
      );
      expect([untyped.status, await untyped.json()]).toEqual([
        201,
        expect.objectContaining({ content_type: 'image/png', filename: 'photo.png', sha256: sha256(image) }),
      ]);
      const text = await handmade(
        user,
        task,
        Buffer.concat([untypedPart(Buffer.from('milk, eggs'), 'list.txt'), Buffer.from('--XyZ--\r\n')]),
      );
      expect([text.status, await text.json()]).toEqual([201, expect.objectContaining({ content_type: 'text/plain' })]);
      // Still refused by what the bytes are; and a part that does say text/plain is held to it.
      await problemOf(
        await handmade(user, task, Buffer.concat([untypedPart(html(), 'page'), Buffer.from('--XyZ--\r\n')])),
        415,
        'file-type-refused',
      );
      await problemOf(
        await handmade(
          user,
          task,
          Buffer.concat([part('file', png(), { filename: 'x.png', type: 'text/plain' }), Buffer.from('--XyZ--\r\n')]),
        ),
        415,
        'file-type-mismatch',
      );
    });

    it.each([
      ['no file part', () => Buffer.concat([part('filename', 'x.txt'), Buffer.from('--XyZ--\r\n')]), 'file-missing'],
      ['an empty body', () => Buffer.from('--XyZ--\r\n'), 'file-missing'],
      [
        'two files',
        () =>
          Buffer.concat([
            part('file', 'one', { filename: 'a.txt', type: 'text/plain' }),
            part('file', 'two', { filename: 'b.txt', type: 'text/plain' }),
            Buffer.from('--XyZ--\r\n'),
          ]),
        'malformed-upload',
      ],
      [
        'a field it does not take',
        () =>
          Buffer.concat([
            part('owner_id', 'someone-else'),
            part('file', 'hi', { filename: 'a.txt', type: 'text/plain' }),
            Buffer.from('--XyZ--\r\n'),
          ]),
        'malformed-upload',
      ],
      [
        'a file part under another name',
        () =>
          Buffer.concat([part('upload', 'hi', { filename: 'a.txt', type: 'text/plain' }), Buffer.from('--XyZ--\r\n')]),
        'malformed-upload',
      ],
      [
        'no closing boundary',
        () => part('file', 'hi there', { filename: 'a.txt', type: 'text/plain' }),
        'malformed-upload',
      ],
    ])('answers 400 to a multipart body with %s, storing nothing', async (_name, body, type) => {
      const user = await newOwner();
      const task = await newTask(user);
      await problemOf(await handmade(user, task, body()), 400, type);
      expect(await stored(user.sub)).toEqual(nothingStored);
    });

    it('answers 400 to multipart without a boundary', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const response = await fetch(attachmentsUrl(task), {
        method: 'POST',
        headers: { ...user.auth, 'Content-Type': 'multipart/form-data' },
        body: 'x',
      });
      await problemOf(response, 400, 'malformed-upload');
    });

    describe('a file part without a filename (RFC 7578 §4.2: it SHOULD have one)', () => {
      /** The `file` part with only `name` in its Content-Disposition, and the Content-Type given (none when undefined). */
      const unnamedPart = (value: Buffer, type?: string) =>
        Buffer.concat([
          Buffer.from(
            `--XyZ\r\nContent-Disposition: form-data; name="file"${type ? `\r\nContent-Type: ${type}` : ''}\r\n\r\n`,
          ),
          value,
          Buffer.from('\r\n'),
        ]);
      const end = Buffer.from('--XyZ--\r\n');

      it.each([
        ['typed text/plain', () => Buffer.concat([unnamedPart(Buffer.from('milk, eggs'), 'text/plain'), end])],
        ['typed image/png', () => Buffer.concat([unnamedPart(png(), 'image/png'), end])],
        ['without a Content-Type', () => Buffer.concat([unnamedPart(Buffer.from('milk, eggs')), end])],
        [
          'after a filename field',
          () =>
            Buffer.concat([part('filename', 'list.txt'), unnamedPart(Buffer.from('milk, eggs'), 'text/plain'), end]),
        ],
        [
          'before a filename field',
          () =>
            Buffer.concat([unnamedPart(Buffer.from('milk, eggs'), 'text/plain'), part('filename', 'list.txt'), end]),
        ],
        ['of 300 KiB', () => Buffer.concat([unnamedPart(png(300 * KiB), 'image/png'), end])],
        [
          'with filename=""',
          () => Buffer.concat([part('file', 'milk, eggs', { filename: '', type: 'text/plain' }), end]),
        ],
      ])('is refused, %s, with 400 saying what is missing and how to send it', async (_name, body) => {
        const user = await newOwner();
        const task = await newTask(user);
        const problem = await problemOf(await handmade(user, task, body()), 400, 'malformed-upload');
        expect(problem.detail).toBe(
          'The part named "file" has no filename in its Content-Disposition (RFC 7578 §4.2), so it is a form field, not a file: send Content-Disposition: form-data; name="file"; filename="report.pdf". Nothing was stored.',
        );
        expect(await stored(user.sub)).toEqual(nothingStored);
      });

      it('is taken as the file when typed application/octet-stream, named by the filename field or "attachment"', async () => {
        const user = await newOwner();
        const task = await newTask(user);
        const image = png();
        const unnamed = await handmade(
          user,
          task,
          Buffer.concat([unnamedPart(image, 'application/octet-stream'), end]),
        );
        expect([unnamed.status, await unnamed.json()]).toEqual([
          201,
          expect.objectContaining({ filename: 'attachment', content_type: 'image/png', sha256: sha256(image) }),
        ]);
        const named = await handmade(
          user,
          task,
          Buffer.concat([part('filename', 'photo.png'), unnamedPart(image, 'application/octet-stream'), end]),
        );
        expect([named.status, await named.json()]).toEqual([
          201,
          expect.objectContaining({ filename: 'photo.png', content_type: 'image/png' }),
        ]);
      });
    });

    it('takes the file name from a filename field, made safe: last path component, no controls or bidi overrides', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const response = await uploadForm(user, task, Buffer.from('hello'), 'ignored.txt', 'text/plain', {
        filename: '../../etc/pass\u0007wd\u202Etxt.exe',
      });
      expect(await response.json()).toMatchObject({ filename: 'passwdtxt.exe' });
    });

    it('answers 422 to a Content-Disposition that is not one', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const response = await uploadRaw(
        user,
        task,
        Buffer.from('hi'),
        'text/plain',
        'attachment; filename="unterminated',
      );
      await problemOf(response, 422, 'validation-failed');
      expect(await stored(user.sub)).toEqual(nothingStored);
    });
  });

  describe('GET /api/v1/attachments/{attachmentId}/content', () => {
    let user: User;
    let id: string;
    const bytes = png(500 * KiB);
    const etag = `"${sha256(bytes)}"`;
    beforeAll(async () => {
      user = await newOwner();
      const response = await uploadRaw(user, await newTask(user), bytes, 'image/png');
      id = ((await response.json()) as { id: string }).id;
    });
    const get = (headers: Record<string, string> = {}) =>
      fetch(`${server.url}/api/v1/attachments/${id}/content`, { headers: { ...user.auth, ...headers } });

    it.each([
      ['bytes=0-99', 0, 99],
      ['bytes=262140-262150', 262140, 262150],
      ['bytes=500000-', 500000, bytes.length - 1],
      ['bytes=-1000', bytes.length - 1000, bytes.length - 1],
      [`bytes=${bytes.length - 1}-99999999`, bytes.length - 1, bytes.length - 1],
      // A suffix longer than the file is the whole file (RFC 9110 §14.1.2), as one part.
      [`bytes=-${600 * KiB}`, 0, bytes.length - 1],
      // Ranges that start past the end are left out; the one left is the part.
      [`bytes=0-99, ${600 * KiB}-`, 0, 99],
    ])('answers Range: %s with 206 and exactly those bytes', async (range, start, end) => {
      const response = await get({ Range: range });
      expect(response.status).toBe(206);
      expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/${bytes.length}`);
      expect(response.headers.get('content-length')).toBe(String(end - start + 1));
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes.subarray(start, end + 1))).toBe(true);
    });

    it('answers 416 with the size to a range beyond the end', async () => {
      const response = await get({ Range: `bytes=${bytes.length}-` });
      await problemOf(response, 416, 'range-not-satisfiable');
      expect(response.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
    });

    it.each(['bytes=-0', 'bytes=99999999999999999999999-', `bytes=${500 * KiB}-${600 * KiB}, ${600 * KiB}-`])(
      'answers 416 to %s, which no byte of the file satisfies',
      async (range) => {
        await problemOf(await get({ Range: range }), 416, 'range-not-satisfiable');
      },
    );

    it.each(['bytes=5-2', 'bytes=1000-999', 'bytes=5-2, 700000-', 'bytes=0-99, 5-2', 'bytes=0-99, x', 'bytes=-'])(
      'ignores Range: %s (invalid or malformed, wholly or in part) and sends the whole file',
      async (range) => {
        const response = await get({ Range: range });
        expect(response.status).toBe(200);
        expect(response.headers.get('content-range')).toBeNull();
        expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
      },
    );

    it('sends the whole file for several ranges, a malformed Range, or an If-Range naming another file', async () => {
      for (const headers of [
        { Range: 'bytes=0-1,5-9' },
        { Range: 'lines=1-2' },
        { Range: 'bytes=0-99', 'If-Range': '"0000"' },
      ] as Record<string, string>[]) {
        const response = await get(headers);
        expect(response.status).toBe(200);
        expect(Number(response.headers.get('content-length'))).toBe(bytes.length);
        await response.arrayBuffer();
      }
      expect((await get({ Range: 'bytes=0-99', 'If-Range': etag })).status).toBe(206);
    });

    describe('several ranges in one Range, on a file of 5 bytes', () => {
      const five = Buffer.from('abcde');
      let small: string;
      beforeAll(async () => {
        const response = await uploadRaw(user, await newTask(user), five, 'text/plain');
        small = ((await response.json()) as { id: string }).id;
      });
      const getSmall = (range: string) =>
        fetch(`${server.url}/api/v1/attachments/${small}/content`, { headers: { ...user.auth, Range: range } });

      it.each([
        ['adjacent', 'bytes=0-0,1-1,2-2', 0, 2],
        ['overlapping', 'bytes=0-2,1-3', 0, 3],
        ['adjacent, out of order', 'bytes=2-3,0-1', 0, 3],
        ['one inside another', 'bytes=1-1, 0-4', 0, 4],
      ])('merges %s ranges (%s) into one and answers 206 with that part', async (_kind, range, start, end) => {
        const response = await getSmall(range);
        expect(response.status).toBe(206);
        expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/5`);
        expect(response.headers.get('content-length')).toBe(String(end - start + 1));
        expect(Buffer.from(await response.arrayBuffer()).toString()).toBe(five.subarray(start, end + 1).toString());
      });

      it.each(['bytes=0-0,2-2', 'bytes=3-4,0-1', 'bytes=0-0,2-2,4-4'])(
        'answers %s, ranges that stay apart, with the whole file (200), not multipart/byteranges',
        async (range) => {
          const response = await getSmall(range);
          expect(response.status).toBe(200);
          expect(response.headers.get('content-range')).toBeNull();
          expect(response.headers.get('content-type')).not.toMatch(/multipart/);
          expect(response.headers.get('content-length')).toBe('5');
          expect(Buffer.from(await response.arrayBuffer()).toString()).toBe('abcde');
        },
      );
    });

    it('answers If-None-Match with the ETag with 304', async () => {
      const response = await get({ 'If-None-Match': etag });
      expect(response.status).toBe(304);
      expect(response.headers.get('etag')).toBe(etag);
    });
  });

  describe('a download that a delete overtakes', () => {
    it('answers 404 (problem+json), never 500, when the bytes went between reading the metadata and the first byte', async () => {
      const user = await newOwner();
      const { id } = (await (await uploadRaw(user, await newTask(user), png(300 * KiB), 'image/png')).json()) as {
        id: string;
      };
      const held = holdNextRead(store);
      const download = fetch(`${server.url}/api/v1/attachments/${id}/content`, { headers: user.auth });
      await held.arrived;
      expect(
        (await fetch(`${server.url}/api/v1/attachments/${id}`, { method: 'DELETE', headers: user.auth })).status,
      ).toBe(204);
      held.release();
      await problemOf(await download, 404, 'attachment-not-found');
      expect(await stored(user.sub)).toEqual(nothingStored);
    });
  });

  describe('owner isolation', () => {
    it("answers 404 for another user's attachments and tasks, whatever the operation", async () => {
      const owner = await newOwner();
      const intruder = await newOwner();
      const task = await newTask(owner);
      const { id } = (await (await uploadRaw(owner, task, Buffer.from('secret'), 'text/plain')).json()) as {
        id: string;
      };
      for (const path of [
        `/api/v1/attachments/${id}`,
        `/api/v1/attachments/${id}/content`,
        `/api/v1/tasks/${task}/attachments`,
      ]) {
        expect((await fetch(`${server.url}${path}`, { headers: intruder.auth })).status).toBe(404);
      }
      expect(
        (await fetch(`${server.url}/api/v1/attachments/${id}`, { method: 'DELETE', headers: intruder.auth })).status,
      ).toBe(404);
      expect((await uploadRaw(intruder, task, Buffer.from('x'), 'text/plain')).status).toBe(404);
      expect(await stored(intruder.sub)).toEqual(nothingStored);
      expect(await stored(owner.sub)).toMatchObject({ attachments: 1 });
    });
  });

  describe('GET /api/v1/tasks/{taskId}/attachments', () => {
    it('pages through a task oldest first and follows Link', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const ids: string[] = [];
      for (const text of ['one', 'two', 'three'])
        ids.push(((await (await uploadRaw(user, task, Buffer.from(text), 'text/plain')).json()) as { id: string }).id);
      const first = await fetch(`${attachmentsUrl(task)}?limit=2`, { headers: user.auth });
      const page = (await first.json()) as { items: { id: string }[]; next_cursor: string };
      expect(page.items.map((a) => a.id)).toEqual(ids.slice(0, 2));
      const link = first.headers.get('link')!.match(/^<([^>]+)>; rel="next"$/)![1]!;
      const second = (await (await fetch(`${server.url}${link}`, { headers: user.auth })).json()) as {
        items: { id: string }[];
        next_cursor: null;
      };
      expect(second).toMatchObject({ next_cursor: null });
      expect(second.items.map((a) => a.id)).toEqual(ids.slice(2));
    });

    it("loses a deleted task's attachments with it, and their bytes (outside PostgreSQL, at the next sweep)", async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const { id } = (await (await uploadRaw(user, task, png(300 * KiB), 'image/png')).json()) as { id: string };
      expect((await fetch(`${server.url}/api/v1/tasks/${task}`, { method: 'DELETE', headers: user.auth })).status).toBe(
        204,
      );
      expect((await fetch(`${server.url}/api/v1/attachments/${id}`, { headers: user.auth })).status).toBe(404);
      expect(await stored(user.sub)).toMatchObject({ attachments: 0, usedBytes: 0 });
      await sweepAttachments(server.database.db, store, new Date(Date.now() - 60_000));
      expect(await stored(user.sub)).toEqual(nothingStored);
    });
  });

  describe('observability', () => {
    it('counts bytes in and out and refusals by reason, and never logs a file', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const marker = `secret-contents-${Math.random().toString(36).slice(2)}`;
      const metric = async (line: RegExp) =>
        Number((await (await fetch(`${server.url}/metrics`)).text()).match(line)?.[1] ?? 0);
      const uploadedBefore = await metric(/^attachment_uploaded_bytes_total (\d+)/m);
      const refusedBefore = await metric(/^attachment_uploads_rejected_total\{reason="FILE_TYPE_REFUSED"\} (\d+)/m);
      const { id } = (await (
        await uploadRaw(user, task, Buffer.from(marker), 'text/plain', `attachment; filename="${marker}.txt"`)
      ).json()) as { id: string };
      await (await fetch(`${server.url}/api/v1/attachments/${id}/content`, { headers: user.auth })).arrayBuffer();
      await uploadRaw(user, task, Buffer.from(`<html><body>${marker}</body></html>`), 'application/octet-stream');
      expect(await metric(/^attachment_uploaded_bytes_total (\d+)/m)).toBe(uploadedBefore + marker.length);
      expect(await metric(/^attachment_downloaded_bytes_total (\d+)/m)).toBeGreaterThanOrEqual(marker.length);
      expect(await metric(/^attachment_uploads_rejected_total\{reason="FILE_TYPE_REFUSED"\} (\d+)/m)).toBe(
        refusedBefore + 1,
      );
      expect(JSON.stringify(server.logs)).not.toContain(`${marker}</body>`);
      expect(JSON.stringify(server.logs)).not.toContain(`"${marker}"`);
    });
  });

  describe('the typed client', () => {
    it('uploads with FormData and downloads the bytes', async () => {
      const user = await newOwner();
      const task = await newTask(user);
      const api = server.client(user.token);
      const bytes = pdf(10 * KiB);
      const { data, response } = await api.POST('/api/v1/tasks/{taskId}/attachments', {
        params: { path: { taskId: task } },
        body: { file: 'report.pdf' },
        bodySerializer: () => {
          const form = new FormData();
          form.append('file', new Blob([bytes], { type: 'application/pdf' }), 'report.pdf');
          return form;
        },
      });
      expect(response.status).toBe(201);
      expect(data).toMatchObject({ filename: 'report.pdf', content_type: 'application/pdf', size: bytes.length });
      const download = await api.GET('/api/v1/attachments/{attachmentId}/content', {
        params: { path: { attachmentId: data!.id } },
        parseAs: 'arrayBuffer',
      });
      expect(Buffer.from(download.data as unknown as ArrayBuffer).equals(bytes)).toBe(true);
    });
  });
});

/** More bytes than any limit, so a body that is never ended is over it however it is cut. */
function randomTail(): Buffer {
  return Buffer.alloc(64 * KiB, 1);
}
