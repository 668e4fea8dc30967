import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { OwnerId } from '../auth/owner-id.js';
import type { BlobStore, ByteRange } from './blob-store.js';

export interface S3BlobStoreOptions {
  bucket: string;
  /** Prepended to the blob id to make the object key; default `attachments/`. */
  prefix?: string;
  /** Default `us-east-1`. */
  region?: string;
  /** An S3-compatible server's URL; when set, buckets are addressed path-style (`<endpoint>/<bucket>/<key>`). */
  endpoint?: string;
  /** Default: the SDK's default provider chain (environment, shared config, instance role, …). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Bytes per part of a multipart upload; default and minimum 5 MiB, S3's smallest part. */
  partSize?: number;
  /**
   * Parts of one upload in flight at once; default 2. An upload holds about partSize × (queueSize + 2)
   * bytes at its peak: the parts in flight, the one being gathered and its copy when joined.
   */
  queueSize?: number;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 5_000;
/** How long a put that already failed may spend deleting what it may have written. */
const CLEANUP_TIMEOUT_MS = 10_000;
/** S3's most keys per ListObjectsV2 page and per DeleteObjects request. */
const PAGE = 1000;
/**
 * What the API's blob ids look like. The sweep only ever touches keys under the prefix whose
 * remainder has this shape: anything else there is not a blob of ours, and `known` is only ever
 * asked about ids that can be a blob id (a uuid column would reject anything else).
 */
const BLOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** S3 answered, and the answer was "that key (or upload) is not there". */
function isMissing(error: unknown, ...names: string[]): boolean {
  return error instanceof S3ServiceException && (names.includes(error.name) || error.name === 'NotFound');
}

/**
 * The blob store on S3 or an S3-compatible server. An object per blob, keyed `<prefix><blobId>`:
 * blob ids are unique server-generated UUIDs and ownership is recorded in PostgreSQL, so the owner
 * is not part of the key. Uploads stream through `@aws-sdk/lib-storage` (a single PutObject for
 * less than one part, a multipart upload otherwise), holding a few parts in memory, never the file.
 *
 * Checksums: the client keeps the SDK's defaults (CRC32 on uploads, `x-amz-checksum-mode` on
 * downloads). Checked against s3rver 3.7.1, the tests' server: lib-storage always hands the SDK
 * each part as a Buffer, so the checksum travels in an `x-amz-checksum-crc32` header, which s3rver
 * ignores, and never as an `aws-chunked` body with a trailer, which s3rver would store framing and
 * all (a 1000-byte streamed PutObject comes back as 1043 bytes). s3rver returns no checksum
 * headers, so there is nothing to validate on the way back. Hence no `requestChecksumCalculation`
 * / `responseChecksumValidation: 'WHEN_REQUIRED'`; the round-trip test compares bytes and would
 * catch a change of either.
 */
export function s3BlobStore(options: S3BlobStoreOptions): BlobStore & { close(): void } {
  const { bucket, prefix = 'attachments/', region = 'us-east-1', endpoint, credentials } = options;
  const partSize = options.partSize ?? MIN_PART_SIZE;
  const queueSize = options.queueSize ?? 2;
  if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new RangeError(`partSize must be an integer of at least ${MIN_PART_SIZE} bytes (S3's smallest part)`);
  }
  if (!Number.isInteger(queueSize) || queueSize < 1) throw new RangeError('queueSize must be a positive integer');

  const client = new S3Client({
    region,
    ...(endpoint !== undefined && { endpoint, forcePathStyle: true }),
    ...(credentials !== undefined && { credentials }),
    // The SDK waits for a TCP connection without limit by default: an S3 that drops packets
    // (down, firewalled) would hang a request for minutes instead of failing it for a 503.
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS },
  });
  const keyOf = (blobId: string) => `${prefix}${blobId}`;

  /** Deletes an object, where it not being there is success (S3 itself says 204 either way). */
  async function deleteObject(key: string, abortSignal?: AbortSignal): Promise<void> {
    try {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal });
    } catch (error) {
      if (!isMissing(error, 'NoSuchKey')) throw error;
    }
  }

  /** Deletes unknown objects (at most PAGE keys); returns how many S3 reports deleted. */
  async function deleteObjects(keys: string[], failures: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const result = await client.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
    );
    // Quiet mode lists only the keys S3 could not delete.
    const errors = result.Errors ?? [];
    for (const error of errors) failures.push(`${error.Key ?? '?'}: ${error.Code ?? ''} ${error.Message ?? ''}`.trim());
    return keys.length - errors.length;
  }

  /** Objects under the prefix written before `olderThan` that `known` does not account for. */
  async function sweepObjects(
    known: (blobIds: string[]) => Promise<Set<string>>,
    olderThan: Date,
    failures: string[],
  ): Promise<number> {
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: PAGE, ContinuationToken: token }),
      );
      const ids: string[] = [];
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || object.LastModified === undefined) continue;
        const id = object.Key.slice(prefix.length);
        if (BLOB_ID.test(id) && object.LastModified < olderThan) ids.push(id);
      }
      if (ids.length > 0) {
        const live = await known(ids);
        removed += await deleteObjects(ids.filter((id) => !live.has(id)).map(keyOf), failures);
      }
      // Deleting keys already listed does not disturb the continuation token (it resumes after a key).
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return removed;
  }

  /** Multipart uploads under the prefix begun before `olderThan` and never completed or aborted. */
  async function sweepUploads(olderThan: Date): Promise<number> {
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      let page;
      try {
        page = await client.send(
          new ListMultipartUploadsCommand({
            Bucket: bucket,
            Prefix: prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
      } catch (error) {
        // A server without ListMultipartUploads (s3rver 3.7 answers 501 NotImplemented; AWS S3
        // always has it) leaves nothing this sweep could find; the objects part still ran.
        if (error instanceof S3ServiceException && error.name === 'NotImplemented') return removed;
        throw error;
      }
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined || upload.Initiated === undefined) continue;
        if (!BLOB_ID.test(upload.Key.slice(prefix.length)) || upload.Initiated >= olderThan) continue;
        try {
          await client.send(
            new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
          );
          removed += 1;
        } catch (error) {
          // Completed or aborted by someone else since the listing: nothing left to remove.
          if (!isMissing(error, 'NoSuchUpload')) throw error;
        }
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker !== undefined);
    return removed;
  }

  return {
    backend: 's3',

    async put(_owner: OwnerId, blobId: string, source: AsyncIterable<Buffer>): Promise<void> {
      const key = keyOf(blobId);
      // Tell the source's own failure (a size limit, the client going away) from S3's: the former
      // must reach the caller as the very object the source threw. Only what the source's `next`
      // throws counts: when lib-storage gives up on the body after S3 failed, Node destroys the
      // stream with an AbortError and Readable.from throws that into this generator at its `yield`.
      let sourceFailure: { error: unknown } | undefined;
      async function* guarded(): AsyncGenerator<Buffer> {
        const iterator = source[Symbol.asyncIterator]();
        let finished = false;
        try {
          for (;;) {
            let next: IteratorResult<Buffer>;
            try {
              next = await iterator.next();
            } catch (error) {
              finished = true;
              sourceFailure = { error };
              throw error;
            }
            if (next.done === true) {
              finished = true;
              return;
            }
            yield next.value;
          }
        } finally {
          // Stopped from outside (S3 failed): let the source clean up, as `for await` would.
          if (!finished) await iterator.return?.();
        }
      }
      // Readable.from pulls from the source only as lib-storage reads (backpressure); in byte mode
      // it reads ahead by at most one piece. A source error destroys the stream with that error,
      // which fails lib-storage's read of the body.
      const body = Readable.from(guarded(), { objectMode: false });
      // What matters of a body error is already in `sourceFailure` or comes out of lib-storage;
      // without a listener, one raised while nobody reads (S3 failed first) would crash the process.
      body.on('error', () => {});
      const upload = new Upload({
        client,
        params: { Bucket: bucket, Key: key, Body: body },
        partSize,
        queueSize,
        leavePartsOnError: false,
      });
      try {
        // When a part fails to read (the source threw) or to upload, lib-storage waits for the
        // parts in flight, sends AbortMultipartUpload (leavePartsOnError: false) and only then
        // rejects, so once `done` settles no part is still arriving and the incomplete upload is
        // gone, unless the abort itself failed, which is what sweep is for. Calling `upload.abort()`
        // instead would reject `done` at once while parts and the abort were still on the way.
        await upload.done();
      } catch (error) {
        // If S3 failed first, stop reading the source (this ends it with `return()`).
        body.destroy();
        if (sourceFailure !== undefined) {
          // A source that failed never let the upload complete: no object to delete.
          throw sourceFailure.error;
        }
        // CompleteMultipartUpload (or the PutObject) may have taken effect with its answer lost.
        // Bounded, so that an unreachable S3 does not hold the caller's error back for long.
        await deleteObject(key, AbortSignal.timeout(CLEANUP_TIMEOUT_MS)).catch(() => {});
        throw error;
      }
    },

    get(_owner: OwnerId, blobId: string, range: ByteRange): AsyncIterable<Buffer> {
      const key = keyOf(blobId);
      return (async function* () {
        let remaining = range.end - range.start + 1;
        if (remaining <= 0) return;
        const response = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${range.start}-${range.end}` }),
        );
        // In Node the SDK's body is the http.IncomingMessage; destroying it closes the socket.
        const stream = response.Body as Readable | undefined;
        if (stream === undefined) throw new Error(`GetObject of ${key} returned no body`);
        try {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            if (chunk.length > remaining) {
              // Never more than asked for: s3rver answers `bytes=0-0` with the whole object (it
              // reads an end of 0 as "no end"). Against S3 this cut never happens.
              if (remaining > 0) yield chunk.subarray(0, remaining);
              return;
            }
            remaining -= chunk.length;
            yield chunk;
          }
        } finally {
          // The consumer stopped early (break, return, throw) or we cut the body short: drop the
          // connection rather than leave a half-read body on it. A body read to its end is left
          // alone, so the connection goes back to the pool (destroying an IncomingMessage before
          // its 'end' closes the socket).
          if (!stream.readableEnded) stream.destroy();
        }
      })();
    },

    async remove(_owner: OwnerId, blobId: string): Promise<void> {
      await deleteObject(keyOf(blobId));
    },

    async sweep(known: (blobIds: string[]) => Promise<Set<string>>, olderThan: Date): Promise<number> {
      const failures: string[] = [];
      const removed = (await sweepObjects(known, olderThan, failures)) + (await sweepUploads(olderThan));
      if (failures.length > 0) {
        throw new Error(
          `sweep removed ${removed} but S3 could not delete ${failures.length} object(s): ${failures.slice(0, 5).join('; ')}`,
        );
      }
      return removed;
    },

    close(): void {
      client.destroy();
    },
  };
}
