import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { png, sha256 } from '../helpers/files.js';
import { migratedPgliteDir, startMain } from '../helpers/process.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { scratchDatabase } from '../helpers/server.js';

/**
 * What the configuration does not use is never loaded: each of these dependencies costs megabytes
 * of memory in every process (src/db/database.ts, src/attachments/storage.ts, src/main.ts). The
 * processes run the real entry point as `npm start` does (tracing preload first), with a module
 * recorder imported before it (tests/helpers/loaded-modules.mjs).
 */
const HEAVY = {
  pglite: /\/node_modules\/@electric-sql\/pglite\//,
  'AWS SDK': /\/node_modules\/@aws-sdk\//,
  'node-redis': /\/node_modules\/(@redis|redis)\//,
  'OpenTelemetry SDK': /\/node_modules\/@opentelemetry\/sdk-/,
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tasks-api-modules-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The API started with `env`, recording the modules it loads; `loaded()` lists them so far. */
async function recorded(env: Record<string, string>) {
  const file = join(dir, `${randomBytes(6).toString('hex')}.txt`);
  const secret = randomBytes(32).toString('base64url');
  const server = await startMain(
    { JWT_SECRET: secret, LOADED_MODULES_FILE: file, ...env },
    { preload: true, nodeArgs: ['--import', './tests/helpers/loaded-modules.mjs'] },
  );
  const loaded = async () => (await readFile(file, 'utf8')).split('\n').filter(Boolean);
  const heavyLoaded = async () => {
    const urls = await loaded();
    return Object.entries(HEAVY)
      .filter(([, pattern]) => urls.some((url) => pattern.test(url)))
      .map(([name]) => name);
  };
  const token = await hs256Token(secret, `modules-${randomBytes(4).toString('hex')}`, '5m');
  const stop = async () => {
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  };
  return { ...server, loaded, heavyLoaded, auth: { Authorization: `Bearer ${token}` }, stop };
}

const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

onPostgres('a production start on PostgreSQL', () => {
  it('loads neither PGlite, nor the AWS SDK, nor node-redis, nor the tracing SDK, and serves the reference page read late', async () => {
    const scratch = await scratchDatabase();
    let stopping: (() => Promise<void>) | undefined;
    try {
      const api = await recorded({
        DATABASE_URL: scratch.url!,
        DATABASE_PREPARED_STATEMENTS: process.env.TEST_DATABASE_PREPARED_STATEMENTS ?? 'on',
      });
      stopping = api.stop;
      // The recorder sees the process's dependencies: what it does not list was not loaded.
      expect((await api.loaded()).some((url) => url.includes('/node_modules/kysely/'))).toBe(true);
      const created = await fetch(`${api.url}/api/v1/tasks`, {
        method: 'POST',
        headers: { ...api.auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ title: 'served without PGlite' }),
      });
      expect(created.status).toBe(201);
      // The reference page is read from disk on its first request.
      const docs = await fetch(`${api.url}/docs`);
      expect(docs.status).toBe(200);
      expect(await docs.text()).toMatch(/^<!DOCTYPE html>/);
      expect(await api.heavyLoaded()).toEqual([]);
    } finally {
      await stopping?.(); // before the drop: the server's connections would hold it
      await scratch.drop();
    }
  }, 60_000);
});

describe('a start on embedded PGlite with attachments in S3', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server();
  });
  const pgliteDir = migratedPgliteDir('tasks-api-modules-pglite-');
  afterAll(async () => {
    await s3.close();
    await rm(pgliteDir, { recursive: true, force: true });
  });

  it('loads PGlite and the AWS SDK when they are used, and both work loaded late', async () => {
    const api = await recorded({
      NODE_ENV: 'development',
      PGLITE_DIR: pgliteDir,
      ATTACHMENT_STORAGE: 's3',
      ATTACHMENT_S3_BUCKET: s3.bucket,
      ATTACHMENT_S3_ENDPOINT: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    });
    try {
      expect(await api.heavyLoaded()).toEqual(['pglite', 'AWS SDK']);
      const task = await fetch(`${api.url}/api/v1/tasks`, {
        method: 'POST',
        headers: { ...api.auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ title: 'stored in PGlite' }),
      });
      expect(task.status).toBe(201);
      const { id } = (await task.json()) as { id: string };
      const bytes = png(64 * 1024);
      const upload = await fetch(`${api.url}/api/v1/tasks/${id}/attachments`, {
        method: 'POST',
        headers: { ...api.auth, 'Content-Type': 'image/png', 'Content-Disposition': 'attachment; filename="a.png"' },
        body: bytes,
      });
      expect(upload.status).toBe(201);
      const attachment = (await upload.json()) as { id: string };
      const content = await fetch(`${api.url}/api/v1/attachments/${attachment.id}/content`, { headers: api.auth });
      expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(bytes));
      expect(s3.requests.some((r) => r.method === 'PUT' && r.url.startsWith(`/${s3.bucket}/`))).toBe(true);
    } finally {
      await api.stop();
    }
  }, 60_000); // a PGlite start on a busy two-core machine can take 20 s
});
