import type { OwnerId } from '../auth/owner-id.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { BlobStore, ByteRange } from './blob-store.js';

/** Bytes per row: large enough that a 10 MiB file is 40 statements, small enough to hold a few in memory. */
export const CHUNK_BYTES = 256 * 1024;
/** Chunk writes of one upload in flight at once. */
const WRITES_IN_FLIGHT = 2;
/** Rows read per statement when downloading (512 KiB): with the next read in flight, what a download holds while its client reads slowly. */
const CHUNKS_PER_READ = 2;

/**
 * Bytes in PostgreSQL itself (`attachment_chunks`), so the API needs no other service; works the
 * same on PGlite. Every statement goes through the owner scope, so row-level security guards the
 * bytes as it guards the tasks. Each chunk is its own statement, not one transaction for the
 * whole upload: a transaction held open while a client sends would hold a pooled connection (and
 * on PGlite, the whole database) for as long as the client likes. A blob whose upload fails is
 * deleted here; one whose process dies half-way is left `uploading` for the sweep.
 */
export function postgresBlobStore(asOwner: OwnerScope): BlobStore {
  return {
    backend: 'postgres',

    async put(owner: OwnerId, blobId: string, source: AsyncIterable<Buffer>): Promise<void> {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let offset = 0;
      // Up to WRITES_IN_FLIGHT chunks are being written while the next is read, so reading the
      // client and committing chunks overlap (and commits can share a WAL flush); memory stays
      // at a few chunks per upload.
      const inFlight = new Set<Promise<unknown>>();
      let failure: unknown;
      const flush = async (bytes: Buffer) => {
        const start = offset;
        offset += bytes.length;
        const write = asOwner(owner, (db) =>
          db
            .insertInto('attachment_chunks')
            .values({ blob_id: blobId, start_offset: start, owner_id: owner, data: bytes })
            .execute(),
        )
          .catch((error: unknown) => {
            failure ??= error;
          })
          .finally(() => inFlight.delete(write));
        inFlight.add(write);
        if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what the chunk write rejected with, unchanged
        if (failure !== undefined) throw failure;
      };
      try {
        for await (const piece of source) {
          pending.push(piece);
          pendingBytes += piece.length;
          while (pendingBytes >= CHUNK_BYTES) {
            const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
            await flush(all.subarray(0, CHUNK_BYTES));
            const rest = all.subarray(CHUNK_BYTES);
            pending = rest.length > 0 ? [rest] : [];
            pendingBytes = rest.length;
          }
        }
        if (pendingBytes > 0) await flush(Buffer.concat(pending, pendingBytes));
        await Promise.all(inFlight);
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what the chunk write rejected with, unchanged
        if (failure !== undefined) throw failure;
      } catch (error) {
        await Promise.all(inFlight);
        await this.remove(owner, blobId).catch(() => undefined);
        throw error;
      }
    },

    async *get(owner: OwnerId, blobId: string, range: ByteRange): AsyncIterable<Buffer> {
      // The chunk holding `range.start` is the last one starting at or before it (whatever size
      // the chunks were written in); from there, walk forward.
      const first = await asOwner(owner, (db) =>
        db
          .selectFrom('attachment_chunks')
          .select('start_offset')
          .where('blob_id', '=', blobId)
          .where('start_offset', '<=', range.start)
          .orderBy('start_offset', 'desc')
          .limit(1)
          .executeTakeFirst(),
      );
      if (first === undefined) throw new Error(`blob ${blobId} has no bytes at offset ${range.start}`);
      // The next rows are asked for while these are sent: the database and the client work at once.
      const read = (from: number) => {
        const rows = asOwner(owner, (db) =>
          db
            .selectFrom('attachment_chunks')
            .select(['start_offset', 'data'])
            .where('blob_id', '=', blobId)
            .where('start_offset', '>=', from)
            .where('start_offset', '<=', range.end)
            .orderBy('start_offset')
            .limit(CHUNKS_PER_READ)
            .execute(),
        );
        rows.catch(() => undefined); // a reader that stops early never awaits the last read
        return rows;
      };
      let from = Number(first.start_offset);
      let next = read(from);
      while (from <= range.end) {
        const rows = await next;
        if (rows.length === 0) throw new Error(`blob ${blobId} has no bytes at offset ${from}`);
        const last = rows.at(-1)!;
        from = Number(last.start_offset) + last.data.byteLength;
        if (from <= range.end) next = read(from);
        for (const row of rows) {
          const start = Number(row.start_offset);
          const data = Buffer.from(row.data.buffer, row.data.byteOffset, row.data.byteLength);
          const slice = data.subarray(Math.max(0, range.start - start), Math.min(data.length, range.end - start + 1));
          if (slice.length > 0) yield slice;
        }
      }
    },

    async remove(owner: OwnerId, blobId: string): Promise<void> {
      await asOwner(owner, (db) => db.deleteFrom('attachment_chunks').where('blob_id', '=', blobId).execute());
    },

    // Chunks belong to their blob row and go with it (on delete cascade): sweeping the rows of
    // unfinished blobs is all there is to do, and no chunk can outlive its row.
    sweep: async () => 0,
  };
}
