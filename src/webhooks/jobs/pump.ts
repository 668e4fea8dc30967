export interface Pump {
  /**
   * Takes no more jobs, hands back the fetched ones not started (`release`), and waits up to
   * `timeoutMs` for those running to end (the rest are left to the queue's expiry).
   */
  stop(timeoutMs: number): Promise<void>;
  /** Fetches now if a slot is free, rather than at the next poll (jobs were just queued). */
  wake(): void;
}

/**
 * Keeps up to `slots` jobs running, each on its own: a slot is refilled as soon as its job ends,
 * whatever the others are doing. (pg-boss's own work loop runs a fetched batch as a unit and
 * fetches again only when the whole batch has ended, so one hanging attempt held its batch's
 * other slots empty until its timeout.) Fetching a job per slot freed would cost a query per job,
 * so each fetch also takes up to `prefetch` jobs more than there are free slots, started as slots
 * free; the next fetch comes when they are all started and a slot is free. When a fetch gets fewer
 * than it asked for (the queue is empty), the next one waits `pollMs` or until a slot frees,
 * whichever comes first.
 *
 * A job fetched ahead waits for a slot here at most `holdMs` (default `pollMs`), then goes back to
 * the queue (`release`), and nothing is fetched while every slot is busy: a worker whose slots are
 * all held by attempts that hang until their timeout must not sit on another user's job while
 * another worker has room for it.
 */
export function deliveryPump<J>(deps: {
  slots: number;
  prefetch: number;
  pollMs: number;
  holdMs?: number;
  fetch: (count: number) => Promise<J[]>;
  /** Never rejects (it settles the job itself). */
  run: (job: J) => Promise<void>;
  /** Hands fetched jobs back to the queue: not started when the pump stops, or held `holdMs` without a free slot. */
  release: (jobs: J[]) => Promise<void>;
  onError: (error: unknown) => void;
}): Pump {
  const running = new Set<Promise<void>>();
  const holdMs = deps.holdMs ?? deps.pollMs;
  let ready: J[] = [];
  let readySince = 0; // when the jobs now in `ready` were fetched
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
  const start = (job: J) => {
    const done: Promise<void> = deps.run(job).finally(() => {
      running.delete(done);
      wake?.();
    });
    running.add(done);
  };

  const loop = (async () => {
    while (!stopping) {
      while (running.size < deps.slots && ready.length > 0) start(ready.shift()!);
      if (running.size >= deps.slots) {
        // Every slot busy: wait for one, and give back what was fetched ahead if it takes long.
        const held = Date.now() - readySince;
        if (ready.length === 0) await nap();
        else if (held < holdMs) await nap(holdMs - held);
        else {
          const back = ready;
          ready = [];
          await deps.release(back).catch(deps.onError);
        }
        continue;
      }
      const wanted = deps.slots - running.size + deps.prefetch;
      let jobs: J[] = [];
      try {
        jobs = await deps.fetch(wanted);
      } catch (error) {
        deps.onError(error);
      }
      ready.push(...jobs);
      readySince = Date.now();
      if (jobs.length < wanted && !stopping) {
        while (running.size < deps.slots && ready.length > 0) start(ready.shift()!);
        await nap(deps.pollMs);
      }
    }
  })();

  return {
    async stop(timeoutMs) {
      stopping = true;
      wake?.();
      await loop;
      const unstarted = ready;
      ready = [];
      if (unstarted.length > 0) await deps.release(unstarted).catch(deps.onError);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...running]),
        new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
    },
    wake: () => wake?.(),
  };
}
