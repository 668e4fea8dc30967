import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { loadOrCreateDevSecret } from '../../src/auth/dev-secret.js';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('loadOrCreateDevSecret', () => {
  it('creates the secret once, readable by its owner only, and returns the same one afterwards', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tasks-api-'));
    dirs.push(dir);
    const file = join(dir, '.data', 'dev-jwt-secret');
    const first = await loadOrCreateDevSecret(file);
    expect(first.created).toBe(true);
    expect(first.secret.length).toBeGreaterThanOrEqual(64);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await loadOrCreateDevSecret(file)).toEqual({ secret: first.secret, created: false });
  });

  it('gives racing processes the same secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tasks-api-'));
    dirs.push(dir);
    const results = await Promise.all(Array.from({ length: 5 }, () => loadOrCreateDevSecret(join(dir, 's'))));
    expect(new Set(results.map((r) => r.secret)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });
});
