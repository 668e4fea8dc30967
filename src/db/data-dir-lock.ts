import { readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

/** Another live process has the embedded database's directory open. */
export class DataDirectoryInUse extends Error {
  override name = 'DataDirectoryInUse';
  readonly code = 'DATA_DIRECTORY_IN_USE';
  constructor(
    readonly directory: string,
    readonly pid: number,
  ) {
    super(
      `The embedded database in ${directory} is in use by process ${pid}. PGlite serves one process only: ` +
        'stop that server first, give this one another PGLITE_DIR, or use DATABASE_URL to share a PostgreSQL server.',
    );
  }
}

const LOCK_FILE = 'tasks-api.lock';

/** The pid a lock file names (NaN for an empty or garbled one, which counts as stale). */
function holderOf(content: string): number {
  try {
    return Number((JSON.parse(content) as { pid?: unknown }).pid);
  } catch {
    return Number.NaN;
  }
}

/** Whether a process with this pid is running (and is not this one). */
function aliveOther(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * Takes the embedded database's directory for this process, like PostgreSQL's postmaster.pid:
 * PGlite does not lock its files, so two servers on one directory would both start and silently
 * overwrite each other's writes. The lock file holds the owner's pid; one left by a process that
 * is gone (killed, crashed, or an earlier run in a container that reused our pid) is taken over.
 * Resolves to the function that gives the directory back.
 */
export async function lockDataDirectory(directory: string): Promise<() => Promise<void>> {
  const file = join(directory, LOCK_FILE);
  const mine = JSON.stringify({ pid: process.pid, host: hostname() });
  for (let attempt = 0; ; attempt += 1) {
    try {
      await writeFile(file, mine, { flag: 'wx', mode: 0o600 });
      return async () => {
        if ((await readFile(file, 'utf8').catch(() => '')) === mine) await unlink(file).catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = holderOf(await readFile(file, 'utf8').catch(() => ''));
    if (aliveOther(pid) || attempt > 0) throw new DataDirectoryInUse(resolve(directory), pid);
    await unlink(file).catch(() => undefined); // stale: its process is gone
  }
}
