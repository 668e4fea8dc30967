import type { Kysely } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import type { BlobStore } from './blob-store.js';

/** Blob rows handled per statement. */
const BATCH = 100;

/**
 * What uploads left behind when their process died half-way, and bytes whose last attachment is
 * gone but that live outside PostgreSQL: `uploading` blobs older than `olderThan` and `released`
 * blobs lose their bytes, then their rows; then the store removes what it holds with no row at
 * all. Runs as the connecting role (the maintenance policy), across owners. Returns how many
 * blobs and stray objects it removed.
 */
export async function sweepAttachments(db: Kysely<DB>, store: BlobStore, olderThan: Date): Promise<number> {
  let removed = 0;
  for (;;) {
    const stale = await db
      .selectFrom('attachment_blobs')
      .select(['id', 'owner_id'])
      .where((eb) =>
        eb.or([
          eb('state', '=', 'released'),
          eb.and([eb('state', '=', 'uploading'), eb('created_at', '<', olderThan)]),
        ]),
      )
      .limit(BATCH)
      .execute();
    for (const blob of stale) {
      await store.remove(blob.owner_id as OwnerId, blob.id);
      await db.deleteFrom('attachment_blobs').where('id', '=', blob.id).where('state', '<>', 'stored').execute();
    }
    removed += stale.length;
    if (stale.length < BATCH) break;
  }
  removed += await store.sweep(async (ids) => {
    if (ids.length === 0) return new Set();
    const rows = await db.selectFrom('attachment_blobs').select('id').where('id', 'in', ids).execute();
    return new Set(rows.map((row) => row.id));
  }, olderThan);
  return removed;
}
