import { randomBytes, randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { OwnerId } from '../../src/auth/owner-id.js';
import type { BlobStore } from '../../src/attachments/blob-store.js';
import { s3BlobStore } from '../../src/attachments/s3-store.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const PREFIX = 'attachments/';
const owner = 'user-1' as OwnerId;

/** `data` as a client upload would arrive: 64 KiB pieces, with a turn of the event loop between. */
async function* pieces(data: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) {
    await Promise.resolve();
    yield data.subarray(offset, offset + size);
  }
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** A limit error as the upload route's size check would throw it: it must come out of put unchanged. */
class TooLarge extends Error {
  readonly status = 413;
}

describe('S3 blob store (against s3rver)', () => {
  let s3: S3Server;
  let store: BlobStore & { close(): void };
  /** The test's own view of the bucket, to see what the store left there. */
  let client: S3Client;

  const keys = async () => {
    const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: PREFIX }));
    return (page.Contents ?? []).map((object) => object.Key);
  };
  const requestsFor = (key: string) => s3.requests.filter((r) => r.url.startsWith(`/${s3.bucket}/${key}?`));

  beforeAll(async () => {
    s3 = await startS3Server();
    store = s3BlobStore({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials });
    client = new S3Client({
      region: 'us-east-1',
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: s3.credentials,
    });
  });

  afterAll(async () => {
    store?.close();
    client?.destroy();
    await s3?.close();
  });

  describe('a 12 MiB blob (three parts of a multipart upload)', () => {
    const data = randomBytes(12 * MiB);
    const id = randomUUID();

    beforeAll(async () => {
      await store.put(owner, id, pieces(data));
    });

    it('was uploaded in three parts and comes back byte for byte, whole and in ranges', async () => {
      const parts = requestsFor(`${PREFIX}${id}`).filter((r) => r.method === 'PUT' && r.url.includes('partNumber='));
      expect(parts.map((r) => [new URL(r.url, 'http://x').searchParams.get('partNumber'), r.status])).toEqual([
        ['1', 200],
        ['2', 200],
        ['3', 200],
      ]);
      expect(store.backend).toBe('s3');
      const read = (start: number, end: number) => collect(store.get(owner, id, { start, end }));
      const last = data.length - 1;
      expect((await read(0, last)).equals(data)).toBe(true);
      expect(await read(0, 0)).toEqual(data.subarray(0, 1));
      expect(await read(last, last)).toEqual(data.subarray(last));
      // Across the boundary between the first and second part, and the second and third.
      expect((await read(PART - 1000, PART + 999)).equals(data.subarray(PART - 1000, PART + 1000))).toBe(true);
      expect((await read(2 * PART - 1, 2 * PART)).equals(data.subarray(2 * PART - 1, 2 * PART + 1))).toBe(true);
      expect((await read(3 * MiB, 11 * MiB)).equals(data.subarray(3 * MiB, 11 * MiB + 1))).toBe(true);
    });

    it('closes the connection when the reader stops early, and keeps it when the reader finishes', async () => {
      const before = s3.requests.length;
      let got = 0;
      for await (const chunk of store.get(owner, id, { start: 0, end: data.length - 1 })) {
        got += chunk.length;
        break;
      }
      expect(got).toBeGreaterThan(0);
      const abandoned = s3.requests.slice(before).find((r) => r.method === 'GET');
      expect(abandoned).toBeDefined();
      // s3rver would close an idle kept-alive connection only after 5 s.
      expect(await until(() => abandoned!.connectionClosed, 2000)).toBe(true);

      const next = s3.requests.length;
      expect((await collect(store.get(owner, id, { start: 10, end: 20 }))).equals(data.subarray(10, 21))).toBe(true);
      const finished = s3.requests.slice(next).find((r) => r.method === 'GET');
      await sleep(200);
      expect(finished).toMatchObject({ finished: true, connectionClosed: false });
    });
  });

  it('rejects a put with the very error the source threw, leaving no object and aborting the multipart upload', async () => {
    const id = randomUUID();
    const key = `${PREFIX}${id}`;
    const limit = new TooLarge('attachment exceeds 7 MiB');
    async function* tooLong(): AsyncGenerator<Buffer> {
      yield* pieces(randomBytes(7 * MiB));
      throw limit;
    }
    const before = s3.requests.length;
    await expect(store.put(owner, id, tooLong())).rejects.toBe(limit);
    // As they stood when put rejected (the records are updated in place).
    const sent = s3.requests
      .slice(before)
      .filter((r) => r.url.startsWith(`/${s3.bucket}/${key}?`))
      .map((r) => ({ ...r }));

    expect(await keys()).not.toContain(key);
    await expect(collect(store.get(owner, id, { start: 0, end: 0 }))).rejects.toBeInstanceOf(NoSuchKey);

    // One full part was uploaded (7 MiB > 5 MiB), so there was a multipart upload to abort.
    const created = sent.find((r) => r.method === 'POST' && /[?&]uploads(=|&|$)/.test(r.url));
    expect(created).toBeDefined();
    const uploadParts = sent.filter((r) => r.method === 'PUT' && r.url.includes('partNumber='));
    expect(uploadParts.length).toBeGreaterThanOrEqual(1);
    expect(uploadParts.every((r) => r.finished)).toBe(true);
    const uploadId = new URL(uploadParts[0]!.url, 'http://x').searchParams.get('uploadId');
    // The store sent AbortMultipartUpload for that upload, after its parts, and put settled only
    // once the server had answered it.
    const abort = sent.at(-1);
    expect(abort?.method).toBe('DELETE');
    expect(new URL(abort!.url, 'http://x').searchParams.get('uploadId')).toBe(uploadId);
    expect(abort?.status).toBeDefined();
    // s3rver 3.7.1 has no AbortMultipartUpload (it answers 405 MethodNotAllowed) and no
    // ListMultipartUploads (501 NotImplemented), so the upload's parts stay in its directory and
    // "no multipart upload in progress" cannot be observed here; against S3 the DELETE above is
    // what removes it. If s3rver learns to abort, this turns 204 and the directory goes.
    expect(abort?.status).toBe(405);
    await expect(stat(join(s3.directory, s3.bucket, '._S3rver_uploads', uploadId!))).resolves.toBeDefined();
  });

  it('rejects a put whose source fails before a whole part without sending anything', async () => {
    const id = randomUUID();
    const failure = new Error('client went away');
    async function* cut(): AsyncGenerator<Buffer> {
      yield* pieces(randomBytes(MiB));
      throw failure;
    }
    const before = s3.requests.length;
    await expect(store.put(owner, id, cut())).rejects.toBe(failure);
    expect(s3.requests.slice(before)).toEqual([]);
  });

  it("rejects a put with S3's error when S3 fails first, and stops reading the source", async () => {
    const broken = s3BlobStore({ bucket: 'no-such-bucket', endpoint: s3.endpoint, credentials: s3.credentials });
    let closed = false;
    async function* endless(): AsyncGenerator<Buffer> {
      try {
        for (;;) {
          await Promise.resolve();
          yield randomBytes(64 * 1024);
        }
      } finally {
        closed = true;
      }
    }
    try {
      // Not the AbortError Node raises in the body stream as lib-storage drops it: that must not
      // pass for the source's own failure.
      await expect(broken.put(owner, randomUUID(), endless())).rejects.toMatchObject({ name: 'NoSuchBucket' });
      expect(await until(() => closed, 2000)).toBe(true);
    } finally {
      broken.close();
    }
  });

  it('stores a small blob with one PutObject, and an empty one', async () => {
    const id = randomUUID();
    const data = randomBytes(1000);
    await store.put(owner, id, pieces(data, 300));
    expect(requestsFor(`${PREFIX}${id}`).map((r) => [r.method, r.status])).toEqual([['PUT', 200]]);
    expect((await collect(store.get(owner, id, { start: 0, end: 999 }))).equals(data)).toBe(true);

    const empty = randomUUID();
    await store.put(owner, empty, pieces(Buffer.alloc(0)));
    expect(await keys()).toContain(`${PREFIX}${empty}`);
    expect(await collect(store.get(owner, empty, { start: 0, end: -1 }))).toEqual(Buffer.alloc(0));
  });

  it('removes idempotently', async () => {
    const id = randomUUID();
    await store.put(owner, id, pieces(randomBytes(1000)));
    await store.remove(owner, id);
    expect(await keys()).not.toContain(`${PREFIX}${id}`);
    await expect(store.remove(owner, id)).resolves.toBeUndefined();
    await expect(store.remove(owner, randomUUID())).resolves.toBeUndefined();
  });

  it('rejects a get of a blob that has no bytes with NoSuchKey (HTTP 404)', async () => {
    const error = await collect(store.get(owner, randomUUID(), { start: 0, end: 9 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoSuchKey);
    expect(error).toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
  });

  it('sweeps unknown objects written before the cutoff, and nothing else', async () => {
    const orphan = randomUUID();
    const kept = randomUUID();
    const fresh = randomUUID();
    const foreign = `${PREFIX}not-a-blob-id`;
    await store.put(owner, orphan, pieces(randomBytes(100)));
    await store.put(owner, kept, pieces(randomBytes(100)));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: foreign, Body: 'x' }));
    // LastModified has whole seconds (S3's and s3rver's): a cutoff on a second boundary, with the
    // fresh object written after it, puts the others strictly before and the fresh one not.
    const cutoff = new Date(Math.ceil((Date.now() + 1) / 1000) * 1000);
    await sleep(cutoff.getTime() - Date.now() + 50);
    await store.put(owner, fresh, pieces(randomBytes(100)));

    const asked: string[][] = [];
    const known = async (ids: string[]) => {
      asked.push([...ids]);
      return new Set(ids.filter((id) => id === kept));
    };
    const before = s3.requests.length;
    const all = await keys();
    const removed = await store.sweep(known, cutoff);

    // Only the blob ids written before the cutoff are asked about; other tests' leftovers are
    // there too, so check inclusion rather than the exact list.
    const askedIds = asked.flat();
    expect(askedIds).toEqual(expect.arrayContaining([orphan, kept]));
    expect(askedIds).not.toContain(fresh);
    expect(askedIds).not.toContain('not-a-blob-id');
    const after = await keys();
    expect(after).not.toContain(`${PREFIX}${orphan}`);
    expect(after).toEqual(expect.arrayContaining([`${PREFIX}${kept}`, `${PREFIX}${fresh}`, foreign]));
    expect(removed).toBe(all.length - after.length);
    expect(removed).toBeGreaterThanOrEqual(1);

    // s3rver has no ListMultipartUploads: the store asked, got 501 and still swept the objects.
    expect(s3.requests.slice(before).find((r) => r.method === 'GET' && /[?&]uploads(=|&|$)/.test(r.url))).toMatchObject(
      { status: 501 },
    );
  });

  // Skipped: s3rver 3.7.1 has neither ListMultipartUploads (GET ?uploads answers 501
  // NotImplemented) nor AbortMultipartUpload (DELETE ?uploadId answers 405 MethodNotAllowed), so
  // an incomplete upload can neither be found nor removed through its API. The test is what it
  // would be against S3 or any server that has both.
  it.skip('sweep aborts an incomplete multipart upload begun before the cutoff', async () => {
    const key = `${PREFIX}${randomUUID()}`;
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
    await client.send(
      new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber: 1, Body: randomBytes(PART) }),
    );
    await sleep(1100);
    const removed = await store.sweep(async () => new Set(), new Date());
    expect(removed).toBeGreaterThanOrEqual(1);
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: PREFIX }));
    expect((uploads.Uploads ?? []).map((u) => u.UploadId)).not.toContain(UploadId);
  });

  it('rejects every operation when S3 cannot be reached, the source error aside', async () => {
    // A loopback port nobody listens on: connections are refused.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const down = s3BlobStore({ bucket: s3.bucket, endpoint: `http://127.0.0.1:${port}`, credentials: s3.credentials });
    try {
      const id = randomUUID();
      // Under Node the rejection is the socket's own error (code ECONNREFUSED); under jest's VM
      // modules the SDK's retry middleware sees an Error of another realm and re-wraps it, keeping
      // only the message, so match on that.
      const refused = /ECONNREFUSED/;
      await expect(down.put(owner, id, pieces(randomBytes(1000)))).rejects.toThrow(refused);
      await expect(collect(down.get(owner, id, { start: 0, end: 0 }))).rejects.toThrow(refused);
      await expect(down.remove(owner, id)).rejects.toThrow(refused);
      await expect(down.sweep(async () => new Set(), new Date())).rejects.toThrow(refused);
    } finally {
      down.close();
    }
  });
});
