import type { OwnerId } from '../auth/owner-id.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { BlobStore, ByteRange } from './blob-store.js';

/** Bytes per row: large enough that a 10 MiB file is 40 statements, small enough to hold a few in memory. */
export const CHUNK_BYTES = 256 * 1024;
/** Rows read per statement when downloading (1 MiB). */
const CHUNKS_PER_READ = 4;

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
      const flush = async (bytes: Buffer) => {
        const start = offset;
        offset += bytes.length;
        await asOwner(owner, (db) => db.insertInto('attachment_chunks').values({ blob_id: blobId, start_offset: start, owner_id: owner, data: bytes }).execute());
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
      } catch (error) {
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
      let from = Number(first.start_offset);
      while (from <= range.end) {
        const rows = await asOwner(owner, (db) =>
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
        if (rows.length === 0) throw new Error(`blob ${blobId} has no bytes at offset ${from}`);
        for (const row of rows) {
          const start = Number(row.start_offset);
          const data = Buffer.from(row.data.buffer, row.data.byteOffset, row.data.byteLength);
          const slice = data.subarray(Math.max(0, range.start - start), Math.min(data.length, range.end - start + 1));
          if (slice.length > 0) yield slice;
          from = start + data.length;
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
