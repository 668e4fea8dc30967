import type { AttachmentsConfig } from '../config.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { BlobStore } from './blob-store.js';
import { postgresBlobStore } from './postgres-store.js';

/**
 * The store ATTACHMENT_STORAGE names: PostgreSQL itself (the default), or S3 / an S3-compatible
 * server, with credentials from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, a profile, an instance role).
 */
export async function blobStoreFor(
  config: AttachmentsConfig,
  asOwner: OwnerScope,
): Promise<BlobStore & { close(): void }> {
  if (config.storage === 's3' && config.s3 !== undefined) {
    // Loaded only when used: the AWS SDK is tens of megabytes of memory a PostgreSQL store never needs.
    const { s3BlobStore } = await import('./s3-store.js');
    return s3BlobStore(config.s3);
  }
  return Object.assign(postgresBlobStore(asOwner), { close: () => undefined });
}

/**
 * Uploads cannot outlast Node's limit on receiving a request (CLIENT_REQUEST_TIMEOUT_MS), so a
 * blob still `uploading` well after it was started belongs to a process that died: twice that
 * limit, and never less than ten minutes.
 */
export const staleUploadAfterMs = (clientRequestTimeoutMs: number): number =>
  Math.max(2 * clientRequestTimeoutMs, 10 * 60_000);
