/**
 * Housekeeping that a request may trigger but never waits for: `purge()` starts `task` in the
 * background at most once per `everyMs` in this process, and lets the next call try again if it
 * failed (the database may have been down).
 */
export function backgroundPurge(everyMs: number, task: () => Promise<unknown>): () => void {
  let lastRun = 0;
  return () => {
    const now = Date.now();
    if (now - lastRun < everyMs) return;
    lastRun = now;
    task().catch(() => {
      lastRun = 0;
    });
  };
}
