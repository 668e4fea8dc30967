// Shared by the scripts and tests that run the server (or the bench baseline) as its own process.
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { SignJWT } from 'jose';
import pg from 'pg';

/** An HS256 token for `sub`, as a server started with JWT_SECRET=`secret` accepts it. */
export const hs256Token = (secret: string, sub: string, expiresIn: number | string): Promise<string> =>
  new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));

/** A TCP port on loopback that nothing listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });

/**
 * Polls `probeUrl` every 100 ms until it answers 2xx (or anything at all with `anyStatus`); throws
 * `failure()` if `child` exits first or `timeoutMs` passes.
 */
export async function waitUntilServing(
  probeUrl: string,
  child: ChildProcess,
  options: { timeoutMs: number; anyStatus?: boolean; failure: () => string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (
      await fetch(probeUrl).then(
        (res) => options.anyStatus === true || res.ok,
        () => false,
      )
    )
      return;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(options.failure());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Creates the PostgreSQL database `url` names unless it exists (the benches' own databases). */
export async function ensureDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: Object.assign(new URL(url), { pathname: '/postgres' }).toString() });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) await admin.query(`create database "${name.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
}
