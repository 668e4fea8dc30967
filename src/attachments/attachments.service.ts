import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { components } from '../../generated/api.js';
import type { OwnerId } from '../auth/owner-id.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { DB } from '../db/schema.js';
import { ClientGone, HttpProblem, ServiceUnavailable } from '../errors/problem.js';
import { creationPosition, decodeCursor, pageOf, queryFingerprint } from '../http/paging.js';
import { TaskNotFound } from '../tasks/errors.js';
import { attachmentsOf, type AttachmentRow } from './attachments.repository.js';
import type { BlobStore, ByteRange } from './blob-store.js';
import { inspect } from './content.js';
import { AttachmentLimitReached, AttachmentNotFound, FileTooLarge, QuotaExceeded } from './errors.js';

export type Attachment = components['schemas']['Attachment'];

export interface AttachmentLimits {
  /** Bytes per file. */
  maxBytes: number;
  /** Bytes an owner's distinct files may take in all. */
  quotaBytes: number;
  maxPerTask: number;
  allowedTypes: readonly string[];
}

/** What the attachments feature counts (Prometheus counters in the app). */
export interface AttachmentMetrics {
  uploaded(bytes: number): void;
  downloaded(bytes: number): void;
  rejected(reason: string): void;
}

/** A file on its way in: its bytes as they arrive, what the client says it is, and whether the rest of the request was well-formed. */
export interface IncomingFile {
  bytes: AsyncIterable<Buffer>;
  declaredType?: string;
  /** The file's name, made safe; asked once the request has been read (a multipart field may follow the file). */
  filename: () => string;
  /** Settles once the whole request has been read: rejects if anything after the file was wrong (a second file, broken framing). */
  finished: Promise<unknown>;
}

/** How many bytes a file may have here, and the error for one that has more. */
export interface UploadAllowance {
  limit: number;
  tooLarge: () => Error;
}

export const toAttachment = (row: AttachmentRow): Attachment => ({
  id: row.id,
  task_id: row.task_id,
  filename: row.filename,
  content_type: row.content_type,
  size: Number(row.size),
  sha256: row.sha256,
  created_at: row.created_at.toISOString(),
});

const SORT = { field: 'created_at', direction: 'asc' } as const;
const isUniqueViolation = (error: unknown) => (error as { code?: string }).code === '23505';

/**
 * Attachments of one owner's tasks. An upload writes its bytes under a new blob id as they
 * arrive (sniffed, counted and hashed on the way), then, in one transaction, either makes that
 * blob the stored copy or, when the owner already has the same bytes, adds a reference to the
 * existing copy and drops the new one; the quota and the per-task limit are checked in that same
 * transaction (the task locked first), so concurrent uploads cannot overrun them, and bytes the
 * owner already stores never count against the quota. Whatever fails, the new blob is removed.
 */
export function attachmentService(deps: {
  asOwner: OwnerScope;
  store: BlobStore;
  limits: AttachmentLimits;
  metrics: AttachmentMetrics;
}) {
  const { asOwner, store, limits, metrics } = deps;
  const of = <T>(owner: OwnerId, work: (attachments: ReturnType<typeof attachmentsOf>) => Promise<T>) =>
    asOwner(owner, (db) => work(attachmentsOf(db, owner)));

  /**
   * What a store's failure means to the caller: the source's own errors (a limit, a refused type,
   * the client gone) as they are; anything else from a store outside the database (S3 down,
   * refusing, timing out) a dependency down, 503; the database's own failures are mapped by the
   * error handler like any other.
   */
  const storeFailure = (error: unknown): unknown =>
    store.backend === 'postgres' || error instanceof HttpProblem || error instanceof ClientGone
      ? error
      : new ServiceUnavailable('The file store is unavailable; retry later.', error);

  /** Removes a blob an upload wrote and did not keep: its bytes, then its row. Best effort: the sweep finds what this misses. */
  async function discard(owner: OwnerId, blobId: string): Promise<void> {
    await store.remove(owner, blobId).catch(() => undefined);
    await of(owner, (attachments) => attachments.deleteBlobRow(blobId)).catch(() => undefined);
  }

  /** The task's usage, if it is the owner's (404) and has room for another file (422): checked before the upload and again in its transaction. */
  function roomOn<T extends { attachments: number }>(taskId: string, task: T | undefined): T {
    if (task === undefined) throw new TaskNotFound(taskId);
    if (task.attachments >= limits.maxPerTask) throw new AttachmentLimitReached(taskId, limits.maxPerTask);
    return task;
  }

  /** The transaction that turns stored bytes into an attachment. */
  async function finish(
    owner: OwnerId,
    taskId: string,
    blobId: string,
    file: { filename: string; contentType: string; size: number; sha256: string },
  ) {
    return asOwner.transaction(owner, async (db: Kysely<DB>) => {
      const attachments = attachmentsOf(db, owner);
      if ((await attachments.lockTask(taskId)) === undefined) throw new TaskNotFound(taskId);
      roomOn(taskId, await attachments.taskUsage(taskId));
      const existing = await attachments.storedBlob(file.sha256);
      let keptBlob = blobId;
      if (existing !== undefined) {
        await attachments.addReference(existing.id);
        await attachments.dropBlob(blobId, store.backend);
        keptBlob = existing.id;
      } else {
        if ((await attachments.reserve(file.size, limits.quotaBytes)) === undefined) {
          throw new QuotaExceeded(Math.max(0, limits.quotaBytes - (await attachments.used())), limits.quotaBytes);
        }
        await attachments.markStored(blobId, file.sha256, file.size);
      }
      const row = await attachments.insert({ taskId, blobId: keptBlob, ...file });
      return { row, deduplicated: keptBlob !== blobId };
    });
  }

  return {
    /**
     * Checks what can be checked before a byte is read: the task is the owner's (404), it has
     * room for another file (422), the file may fit in the quota (413). The allowance is the
     * per-file limit or, when smaller, the most a file can have and still be taken: what is left
     * of the quota, or the size of the owner's largest file, since a file that is one the owner
     * already stores costs nothing (which only its hash, at the end, can tell).
     */
    async allowance(owner: OwnerId, taskId: string): Promise<UploadAllowance> {
      const task = roomOn(taskId, await of(owner, (attachments) => attachments.taskUsage(taskId)));
      const left = Math.max(0, limits.quotaBytes - task.used);
      const room = Math.max(left, task.largest);
      if (room < limits.maxBytes) return { limit: room, tooLarge: () => new QuotaExceeded(left, limits.quotaBytes) };
      return { limit: limits.maxBytes, tooLarge: () => new FileTooLarge(limits.maxBytes) };
    },

    async upload(owner: OwnerId, taskId: string, file: IncomingFile, allowance: UploadAllowance): Promise<Attachment> {
      const blobId = randomUUID();
      await of(owner, (attachments) => attachments.createBlob(blobId, store.backend));
      try {
        const inspected = inspect(file.bytes, {
          limit: allowance.limit,
          tooLarge: allowance.tooLarge,
          declared: file.declaredType,
          allowed: limits.allowedTypes,
        });
        await store.put(owner, blobId, inspected.bytes).catch((error: unknown) => {
          throw storeFailure(error);
        });
        await file.finished;
        const found = inspected.result();
        const fields = {
          filename: file.filename(),
          contentType: found.contentType,
          size: found.size,
          sha256: found.sha256,
        };
        // Two uploads of the same new file can race to be its stored copy. The loser finds the
        // winner's on its second try: after a unique violation (both went to store it), or after the
        // quota refused it (the winner's copy took the room; its bytes then cost nothing). That
        // refusal comes only once the winner has committed (its reservation held the usage row
        // until then), so the second try sees its copy. A new transaction rather than a second look
        // in the same one: that would lock the copy while holding the usage row, the reverse of the
        // order in which deleting an attachment locks them (the release trigger), so a deadlock.
        const { row, deduplicated } = await finish(owner, taskId, blobId, fields).catch((error: unknown) => {
          if (isUniqueViolation(error) || error instanceof QuotaExceeded) return finish(owner, taskId, blobId, fields);
          throw error;
        });
        if (deduplicated && store.backend !== 'postgres') await discard(owner, blobId);
        metrics.uploaded(found.size);
        return toAttachment(row);
      } catch (error) {
        await discard(owner, blobId);
        metrics.rejected(error instanceof HttpProblem || error instanceof ClientGone ? error.code : 'ERROR');
        throw error;
      }
    },

    async list(
      owner: OwnerId,
      taskId: string,
      query: { limit?: number; cursor?: string },
    ): Promise<components['schemas']['AttachmentPage']> {
      const limit = query.limit ?? 20;
      const fingerprint = queryFingerprint({ attachments: taskId });
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, fingerprint, SORT);
      const rows = await of(owner, async (attachments) => {
        const page = await attachments.page(taskId, limit + 1, after);
        // An empty first page of a task that is not the owner's is a 404, not an empty list.
        if (page.length === 0 && after === undefined && (await attachments.taskUsage(taskId)) === undefined)
          throw new TaskNotFound(taskId);
        return page;
      });
      return pageOf(rows, limit, fingerprint, toAttachment, creationPosition);
    },

    async get(owner: OwnerId, id: string): Promise<AttachmentRow> {
      const row = await of(owner, (attachments) => attachments.find(id));
      if (row === undefined) throw new AttachmentNotFound(id);
      return row;
    },

    /**
     * The bytes of `range` of an attachment read with `get`, counted as they go out. A delete
     * that comes after `get` can take the bytes away before they are read (the last attachment
     * of a file frees them): a read that fails when the attachment is no longer there is
     * AttachmentNotFound, the answer the download would have had a moment later, not a broken
     * store. Before the first byte that is a 404; after it, the response is cut short as for any
     * failure mid-stream. A failure while the attachment still exists is the store's.
     */
    async *content(owner: OwnerId, row: AttachmentRow, range: ByteRange): AsyncIterable<Buffer> {
      try {
        for await (const piece of store.get(owner, row.blob_id, range)) {
          metrics.downloaded(piece.length);
          yield piece;
        }
      } catch (error) {
        const gone = await of(owner, (attachments) => attachments.find(row.id)).then(
          (found) => found === undefined,
          () => false,
        );
        throw gone ? new AttachmentNotFound(row.id) : storeFailure(error);
      }
    },

    async remove(owner: OwnerId, id: string): Promise<void> {
      const blobId = await of(owner, (attachments) => attachments.remove(id));
      if (blobId === undefined) throw new AttachmentNotFound(id);
      // Bytes outside PostgreSQL are removed now if that was the last reference (else by the sweep).
      if (store.backend === 'postgres') return;
      const released = await of(owner, (attachments) => attachments.releasedBlob(blobId));
      if (released !== undefined) await discard(owner, blobId);
    },
  };
}

export type AttachmentService = ReturnType<typeof attachmentService>;
