export interface Pump {
  /** Takes no more jobs, and waits up to `timeoutMs` for those running to end (the rest are left to the queue's expiry). */
  stop(timeoutMs: number): Promise<void>;
}

/**
 * Keeps up to `slots` jobs running, each on its own: a slot is refilled the moment its job ends,
 * whatever the others are doing. (pg-boss's own work loop runs a fetched batch as a unit and
 * fetches again only when the whole batch has ended, so one hanging attempt held its batch's
 * other slots empty until its timeout.) One fetch at a time asks for as many jobs as there are
 * free slots; when it gets fewer (the queue is empty, or what is left is held back), the next
 * fetch waits `pollMs` or until a slot frees, whichever comes first.
 */
export function deliveryPump<J>(deps: {
  slots: number;
  pollMs: number;
  fetch: (count: number) => Promise<J[]>;
  /** Never rejects (it settles the job itself). */
  run: (job: J) => Promise<void>;
  onError: (error: unknown) => void;
}): Pump {
  const running = new Set<Promise<void>>();
  let stopping = false;
  let wake: (() => void) | undefined;
  const nap = (ms?: number) =>
    new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => wake?.(), ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  const loop = (async () => {
    while (!stopping) {
      const free = deps.slots - running.size;
      if (free === 0) {
        await nap();
        continue;
      }
      let jobs: J[] = [];
      try {
        jobs = await deps.fetch(free);
      } catch (error) {
        deps.onError(error);
      }
      for (const job of jobs) {
        const done: Promise<void> = deps.run(job).finally(() => {
          running.delete(done);
          wake?.();
        });
        running.add(done);
      }
      if (jobs.length < free && !stopping) await nap(deps.pollMs);
    }
  })();

  return {
    async stop(timeoutMs) {
      stopping = true;
      wake?.();
      await loop;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...running]), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    },
  };
}
