import { sql, type Kysely } from 'kysely';
import type { OwnerId } from '../auth/owner-id.js';
import type { DB } from '../db/schema.js';
import type { Position } from '../http/paging.js';

/** The columns the API shows (and the blob behind them, which it does not). */
const attachmentColumns = [
  'id',
  'task_id',
  'filename',
  'content_type',
  'size',
  'sha256',
  'created_at',
  'blob_id',
] as const;

export interface AttachmentFields {
  taskId: string;
  blobId: string;
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
}

/**
 * All Kysely code of the attachments feature, for one owner: every query starts from that
 * owner's rows, every insert takes the owner from here.
 */
export function attachmentsOf(db: Kysely<DB>, owner: OwnerId) {
  return {
    /**
     * The task, how many attachments it has, the bytes the owner's files take and the size of the
     * largest of them (a file no larger may be one the owner already stores, which costs nothing);
     * undefined when the task is not the owner's.
     */
    async taskUsage(taskId: string) {
      const task = await db
        .selectFrom('tasks')
        .select([
          'id',
          (eb) =>
            eb
              .selectFrom('attachments')
              .select(eb.fn.countAll<string | number>().as('n'))
              .where('attachments.task_id', '=', taskId)
              .as('attachments'),
          (eb) =>
            eb.selectFrom('attachment_usage').select('bytes').where('attachment_usage.owner_id', '=', owner).as('used'),
          (eb) =>
            eb
              .selectFrom('attachment_blobs')
              .select((blobs) => blobs.fn.max('size').as('largest'))
              .where('attachment_blobs.owner_id', '=', owner)
              .where('attachment_blobs.state', '=', 'stored')
              .as('largest'),
        ])
        .where('tasks.owner_id', '=', owner)
        .where('tasks.id', '=', taskId)
        .executeTakeFirst();
      return (
        task && {
          attachments: Number(task.attachments ?? 0),
          used: Number(task.used ?? 0),
          largest: Number(task.largest ?? 0),
        }
      );
    },

    /**
     * Locks the owner's task until the transaction ends, so that uploads to it finish one at a
     * time; undefined when the task is not the owner's. A statement of its own, taken before the
     * task's attachments are counted: under READ COMMITTED a statement sees what was committed
     * when it began, so a count in the statement that waited for the lock would miss the
     * attachment of the upload it waited for.
     */
    lockTask: (taskId: string) =>
      db
        .selectFrom('tasks')
        .select('id')
        .where('owner_id', '=', owner)
        .where('id', '=', taskId)
        .forUpdate()
        .executeTakeFirst(),

    createBlob: (id: string, backend: 'postgres' | 's3') =>
      db.insertInto('attachment_blobs').values({ id, owner_id: owner, backend, state: 'uploading' }).execute(),

    /** The owner's stored blob with these bytes, locked, if there is one. */
    storedBlob: (sha256: string) =>
      db
        .selectFrom('attachment_blobs')
        .select('id')
        .where('owner_id', '=', owner)
        .where('state', '=', 'stored')
        .where('sha256', '=', sha256)
        .forUpdate()
        .executeTakeFirst(),

    addReference: (blobId: string) =>
      db
        .updateTable('attachment_blobs')
        .set((eb) => ({ ref_count: eb('ref_count', '+', 1) }))
        .where('owner_id', '=', owner)
        .where('id', '=', blobId)
        .execute(),

    /** An upload's blob made the stored copy of its bytes, referenced once. */
    markStored: (blobId: string, sha256: string, size: number) =>
      db
        .updateTable('attachment_blobs')
        .set({ state: 'stored', sha256, size, ref_count: 1 })
        .where('owner_id', '=', owner)
        .where('id', '=', blobId)
        .execute(),

    /**
     * Adds `bytes` to the owner's usage unless that would pass `quota`: the new total, or
     * undefined when it does not fit (nothing changed). One statement, so concurrent uploads
     * cannot both squeeze into the same space.
     */
    async reserve(bytes: number, quota: number): Promise<number | undefined> {
      if (bytes > quota) return undefined;
      const row = await db
        .insertInto('attachment_usage')
        .values({ owner_id: owner, bytes })
        .onConflict((oc) =>
          oc
            .column('owner_id')
            .doUpdateSet({ bytes: sql`attachment_usage.bytes + excluded.bytes` })
            .where(sql<boolean>`attachment_usage.bytes + excluded.bytes <= ${quota}`),
        )
        .returning('bytes')
        .executeTakeFirst();
      return row && Number(row.bytes);
    },

    async used(): Promise<number> {
      const row = await db
        .selectFrom('attachment_usage')
        .select('bytes')
        .where('owner_id', '=', owner)
        .executeTakeFirst();
      return Number(row?.bytes ?? 0);
    },

    /** Removes an upload's blob row (its chunks go with it); a blob with bytes elsewhere is left `released` for them to be removed. */
    dropBlob(blobId: string, backend: 'postgres' | 's3') {
      if (backend === 'postgres') return this.deleteBlobRow(blobId);
      return db
        .updateTable('attachment_blobs')
        .set({ state: 'released' })
        .where('owner_id', '=', owner)
        .where('id', '=', blobId)
        .execute();
    },

    deleteBlobRow: (blobId: string) =>
      db.deleteFrom('attachment_blobs').where('owner_id', '=', owner).where('id', '=', blobId).execute(),

    /** The blob, if its bytes are waiting to be removed. */
    releasedBlob: (blobId: string) =>
      db
        .selectFrom('attachment_blobs')
        .select(['id', 'backend'])
        .where('owner_id', '=', owner)
        .where('id', '=', blobId)
        .where('state', '=', 'released')
        .executeTakeFirst(),

    insert: (fields: AttachmentFields) =>
      db
        .insertInto('attachments')
        .values({
          owner_id: owner,
          task_id: fields.taskId,
          blob_id: fields.blobId,
          filename: fields.filename,
          content_type: fields.contentType,
          size: fields.size,
          sha256: fields.sha256,
        })
        .returning(attachmentColumns)
        .executeTakeFirstOrThrow(),

    find: (id: string) =>
      db
        .selectFrom('attachments')
        .select(attachmentColumns)
        .where('owner_id', '=', owner)
        .where('id', '=', id)
        .executeTakeFirst(),

    /** A task's attachments after `after`, oldest first. */
    page: (taskId: string, limit: number, after?: Position) =>
      db
        .selectFrom('attachments')
        .select(attachmentColumns)
        .where('owner_id', '=', owner)
        .where('task_id', '=', taskId)
        .$if(after !== undefined, (qb) =>
          qb.where(sql<boolean>`(created_at, id) > (${after!.key}::timestamptz, ${after!.id}::uuid)`),
        )
        .orderBy('created_at')
        .orderBy('id')
        .limit(limit)
        .execute(),

    /** Deletes the attachment; the blob's reference count (and usage) follow by trigger. The blob's id, or undefined when there was none. */
    remove: async (id: string) =>
      (
        await db
          .deleteFrom('attachments')
          .where('owner_id', '=', owner)
          .where('id', '=', id)
          .returning('blob_id')
          .executeTakeFirst()
      )?.blob_id,
  };
}

export type AttachmentRow = NonNullable<Awaited<ReturnType<ReturnType<typeof attachmentsOf>['find']>>>;
