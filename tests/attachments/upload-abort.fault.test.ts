import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { sweepAttachments } from '../../src/attachments/sweep.js';
import { startAttachmentServer, STORAGES, type AttachmentServer } from '../helpers/attachment-stores.js';
import { buildTask } from '../helpers/factories.js';
import { nothingStored, png } from '../helpers/files.js';
import { newUser } from '../helpers/server.js';

const KiB = 1024;
/** Offsets are drawn from this seed (printed, and settable with ABORT_SEED, to replay a failure). */
const SEED = Number(process.env.ABORT_SEED ?? Date.now() % 1_000_000);
const CUTS = 8;

/** A small deterministic PRNG (mulberry32), so a failing set of offsets can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Raw HTTP/1.1 on a socket: headers and then exactly `body`, nothing more. */
function send(port: number, head: string, body: Buffer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(head);
      socket.write(body, () => resolve(socket));
    });
    socket.on('error', reject);
  });
}

/**
 * Polls until `check` holds (the server cleans up after an abort asynchronously) or `ms` pass. A
 * read that throws is retried too until then: while an aborted upload is being cleaned up, its
 * object can still be in the store with no row for it (`stored` throws on such an orphan), which
 * is only a defect if it stays.
 */
async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const value = await read();
      if (check(value) || Date.now() > deadline) return value;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await sleep(50);
  }
}

describe.each(STORAGES)('uploads that never finish, stored in %s', (storage) => {
  let running: AttachmentServer;
  beforeAll(async () => {
    running = await startAttachmentServer(storage, {
      attachments: { maxBytes: 2048 * KiB },
      clientRequestTimeoutMs: 1500,
    });
  });
  afterAll(() => running.close());

  async function owner() {
    const sub = newUser();
    const token = await running.server.tokenFor(sub);
    const { data } = await running.server.client(token).POST('/api/v1/tasks', { body: buildTask() });
    const port = Number(new URL(running.server.url).port);
    const path = `/api/v1/tasks/${data!.id}/attachments`;
    return { sub, token, port, path };
  }

  const isEmpty = (stored: typeof nothingStored) => JSON.stringify(stored) === JSON.stringify(nothingStored);

  it(`leaves nothing behind when the client disconnects at ${CUTS} random offsets of a raw upload (seed ${SEED})`, async () => {
    const next = random(SEED);
    const { sub, token, port, path } = await owner();
    const file = png(900 * KiB);
    const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/png\r\nContent-Length: ${file.length}\r\n\r\n`;
    const gone = () => running.server.logs.filter((line) => line.message === 'client went away mid-request').length;
    const goneBefore = gone();
    for (let i = 0; i < CUTS; i += 1) {
      const cut = Math.floor(next() * file.length);
      const socket = await send(port, head, file.subarray(0, cut));
      await sleep(20 + Math.floor(next() * 80)); // some of it stored before the cut, sometimes
      socket.destroy();
    }
    expect(await eventually(() => running.stored(sub), isEmpty)).toEqual(nothingStored);
    // Every cut reached the upload mid-body (its blob row written, some bytes maybe too) and was seen as the client gone.
    expect(
      await eventually(
        async () => gone() - goneBefore,
        (n) => n === CUTS,
      ),
    ).toBe(CUTS);
  });

  it(`leaves nothing behind when a multipart upload is cut at ${CUTS} random offsets, framing included (seed ${SEED})`, async () => {
    const next = random(SEED + 1);
    const { sub, token, port, path } = await owner();
    const body = Buffer.concat([
      Buffer.from('--B0undary\r\nContent-Disposition: form-data; name="filename"\r\n\r\nholiday.png\r\n'),
      Buffer.from(
        '--B0undary\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n',
      ),
      png(900 * KiB),
      Buffer.from('\r\n--B0undary--\r\n'),
    ]);
    const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: ${body.length}\r\n\r\n`;
    // The framing's own edges too: inside the field, the part headers, the last byte before the end.
    const cuts = [
      40,
      120,
      body.length - 10,
      body.length - 1,
      ...Array.from({ length: CUTS - 4 }, () => Math.floor(next() * body.length)),
    ];
    for (const cut of cuts) {
      const socket = await send(port, head, body.subarray(0, cut));
      await sleep(20 + Math.floor(next() * 80));
      socket.destroy();
    }
    expect(await eventually(() => running.stored(sub), isEmpty)).toEqual(nothingStored);
  });

  it('closes an upload that stops sending once CLIENT_REQUEST_TIMEOUT_MS passes, and keeps nothing of it', async () => {
    const { sub, token, port, path } = await owner();
    const file = png(900 * KiB);
    const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/png\r\nContent-Length: ${file.length}\r\n\r\n`;
    const socket = await send(port, head, file.subarray(0, 400 * KiB));
    const reply: Buffer[] = [];
    socket.on('data', (piece: Buffer) => reply.push(piece));
    const closed = new Promise<number>((resolve) => {
      const started = Date.now();
      socket.on('close', () => resolve(Date.now() - started));
    });
    const after = await closed;
    expect(after).toBeLessThan(4000);
    // Node answers 408 if it can; the socket closes either way.
    expect(Buffer.concat(reply).toString('latin1')).toMatch(/^(HTTP\/1\.1 408|)/);
    expect(await eventually(() => running.stored(sub), isEmpty)).toEqual(nothingStored);
  });

  it('the sweep removes what a crashed upload left (an old unfinished blob), and nothing of an upload in progress', async () => {
    const { sub, token, port, path } = await owner();
    const file = png(900 * KiB);
    // One upload left half-way (as if its process had died): its blob row and some bytes stay while
    // the socket is open; the sweep with a cut-off in the future sees it as abandoned.
    const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/png\r\nContent-Length: ${file.length}\r\n\r\n`;
    const socket = await send(port, head, file.subarray(0, 600 * KiB));
    const half = await eventually(
      () => running.stored(sub),
      (s) => s.blobs === 1 && (storage === 's3' || s.chunks > 0),
    );
    expect(half.blobs).toBe(1);
    expect(await sweepAttachments(running.server.database.db, running.store, new Date(Date.now() - 60_000))).toBe(0);
    expect((await running.stored(sub)).blobs).toBe(1);
    expect(
      await sweepAttachments(running.server.database.db, running.store, new Date(Date.now() + 60_000)),
    ).toBeGreaterThan(0);
    expect(await running.stored(sub)).toMatchObject({ blobs: 0, chunks: 0, attachments: 0 });
    socket.destroy();
    expect(await eventually(() => running.stored(sub), isEmpty)).toEqual(nothingStored);
  });
});
