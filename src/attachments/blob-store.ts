import type { OwnerId } from '../auth/owner-id.js';

/** Bytes `start` to `end` of a blob, both inclusive (as in an HTTP Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Where the bytes of attachments live. The metadata (which blobs exist, who owns them, how many
 * attachments point at each) is always in PostgreSQL; a store only keeps bytes under a blob id.
 * Blob ids are UUIDs the API generates, never derived from anything a client sends.
 */
export interface BlobStore {
  readonly backend: 'postgres' | 's3';
  /**
   * Stores everything `source` yields as blob `blobId` of `owner`, reading it as fast as the
   * store takes it (backpressure, never the whole file in memory). Resolves once the bytes are
   * durable. When `source` throws (the client went away, a limit was hit) or the store fails, it
   * rejects with that error after removing what it wrote; a crash in between is what `sweep` is for.
   */
  put(owner: OwnerId, blobId: string, source: AsyncIterable<Buffer>): Promise<void>;
  /** The bytes of `range`, in order, in pieces of the store's choosing. */
  get(owner: OwnerId, blobId: string, range: ByteRange): AsyncIterable<Buffer>;
  /** Removes the bytes of a blob; removing one that has none is not an error. */
  remove(owner: OwnerId, blobId: string): Promise<void>;
  /**
   * Removes bytes no finished upload accounts for and that were written before `olderThan`:
   * what a crash left behind. `known` says which of the given blob ids still have a row.
   * Returns how many things it removed.
   */
  sweep(known: (blobIds: string[]) => Promise<Set<string>>, olderThan: Date): Promise<number>;
}
