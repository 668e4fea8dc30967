import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { BlobStore } from '../../src/attachments/blob-store.js';
import { postgresBlobStore } from '../../src/attachments/postgres-store.js';
import { s3BlobStore } from '../../src/attachments/s3-store.js';
import type { AttachmentsConfig } from '../../src/config.js';
import { ownerScope } from '../../src/db/owner-scope.js';
import { storedFor } from './files.js';
import { startS3Server } from './s3-server.js';
import { startServer, type TestServer } from './server.js';

export type Storage = 'postgres' | 's3';

/** Both stores, for `describe.each`: every attachment test runs on each. */
export const STORAGES: readonly Storage[] = ['postgres', 's3'];

export interface AttachmentServer {
  server: TestServer;
  /** The server's blob store, for the sweep. */
  store: BlobStore;
  /**
   * What the owner has stored, everywhere: attachment and blob rows, its usage, and its bytes
   * (`chunks`: rows of chunks in PostgreSQL, or objects in S3). With S3 it also checks that no
   * object is left that no blob row accounts for.
   */
  stored(owner: string): Promise<{ attachments: number; blobs: number; chunks: number; usedBytes: number }>;
  close(): Promise<void>;
}

/** The test server with attachments stored in `storage` (a fresh s3rver for S3). */
export async function startAttachmentServer(
  storage: Storage,
  options: { attachments?: Partial<AttachmentsConfig>; clientRequestTimeoutMs?: number } = {},
): Promise<AttachmentServer> {
  if (storage === 'postgres') {
    const server = await startServer(options);
    return {
      server,
      store: postgresBlobStore(ownerScope(server.database)),
      stored: (owner) => storedFor(server.database, owner),
      close: () => server.close(),
    };
  }
  const s3 = await startS3Server();
  const settings = { bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials, region: 'us-east-1' };
  const store = s3BlobStore(settings);
  const client = new S3Client({ ...settings, forcePathStyle: true });
  const server = await startServer({ ...options, blobStore: store });
  return {
    server,
    store,
    async stored(owner) {
      const rows = await storedFor(server.database, owner);
      const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'attachments/' }));
      const ids = (listed.Contents ?? []).map((object) => object.Key!.slice('attachments/'.length));
      const blobs = new Map(
        (await server.database.db.selectFrom('attachment_blobs').select(['id', 'owner_id']).execute()).map((b) => [
          b.id,
          b.owner_id,
        ]),
      );
      const orphans = ids.filter((id) => !blobs.has(id));
      if (orphans.length > 0) throw new Error(`objects without a blob row: ${orphans.join(', ')}`);
      return { ...rows, chunks: ids.filter((id) => blobs.get(id) === owner).length };
    },
    async close() {
      await server.close();
      store.close();
      client.destroy();
      await s3.close();
    },
  };
}
