import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { s3BlobStore } from '../../src/attachments/s3-store.js';
import { buildTask } from '../helpers/factories.js';
import { pdf, storedFor } from '../helpers/files.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { newUser, startServer, type TestServer } from '../helpers/server.js';

/** S3 gone (the process stopped: connections refused) under a running API. */
describe('attachments stored in S3 when S3 is down', () => {
  let s3: S3Server;
  let server: TestServer;
  let store: ReturnType<typeof s3BlobStore>;
  beforeAll(async () => {
    s3 = await startS3Server();
    store = s3BlobStore({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials });
    server = await startServer({ blobStore: store });
  });
  afterAll(async () => {
    await server.close();
    store.close();
    await s3.close().catch(() => undefined); // already closed by the test, unless it failed first
  });

  it('answers uploads and downloads 503 with Retry-After, and keeps nothing of the refused upload', async () => {
    const sub = newUser();
    const token = await server.tokenFor(sub);
    const auth = { Authorization: `Bearer ${token}` };
    const { data: task } = await server.client(token).POST('/api/v1/tasks', { body: buildTask() });
    const upload = () =>
      fetch(`${server.url}/api/v1/tasks/${task!.id}/attachments`, {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/pdf' },
        body: pdf(64 * 1024),
      });
    const stored = (await (await upload()).json()) as { id: string };
    const before = await storedFor(server.database, sub);

    await s3.close();
    const refused = await upload();
    expect([refused.status, refused.headers.get('retry-after')]).toEqual([503, '5']);
    expect(((await refused.json()) as { type: string }).type).toBe('urn:tasks-api:problem:service-unavailable');
    const download = await fetch(`${server.url}/api/v1/attachments/${stored.id}/content`, { headers: auth });
    expect([download.status, download.headers.get('content-type')]).toEqual([
      503,
      'application/problem+json; charset=utf-8',
    ]);
    expect(await storedFor(server.database, sub)).toEqual(before);
    expect(before).toMatchObject({ attachments: 1, blobs: 1 });
  });
});
