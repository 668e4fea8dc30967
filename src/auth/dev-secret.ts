import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JwtConfig } from '../config.js';

/**
 * The development HS256 secret: generated once, kept in a file only its owner can read, and
 * shared by the server and `npm run token` so that tokens minted locally are accepted.
 */
export async function loadOrCreateDevSecret(file: string): Promise<{ secret: string; created: boolean }> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const secret = randomBytes(48).toString('base64url');
  try {
    await writeFile(file, `${secret}\n`, { flag: 'wx', mode: 0o600 });
    return { secret, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  // Another process created it first; it may still be writing.
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length > 0) return { secret: existing, created: false };
    await sleep(20);
  }
  throw new Error(`${file} exists but is empty; delete it to generate a new development secret`);
}

/**
 * The JWT settings with the development secret filled in when the configuration asks for one
 * (development mode with neither `JWT_SECRET` nor `JWT_JWKS_URL`).
 */
export async function withDevSecret(
  jwt: JwtConfig,
): Promise<{ jwt: JwtConfig; devSecret?: { file: string; created: boolean } }> {
  if (jwt.devSecretFile === undefined) return { jwt };
  const { secret, created } = await loadOrCreateDevSecret(jwt.devSecretFile);
  return { jwt: { ...jwt, secret }, devSecret: { file: jwt.devSecretFile, created } };
}
