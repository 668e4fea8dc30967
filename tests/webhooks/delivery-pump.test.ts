import { describe, expect, it } from '@jest/globals';
import { deliveryPump } from '../../src/webhooks/jobs/pump.js';

/** A queue of numbered jobs; job 0 hangs until released, the others take `ms` each (or hang too when `ms` is Infinity). */
function harness(total: number, ms: number) {
  const queue = Array.from({ length: total }, (_, i) => i);
  const asked: number[] = [];
  const done: number[] = [];
  let inFlight = 0;
  let most = 0;
  let release!: () => void;
  const hang = new Promise<void>((resolve) => (release = resolve));
  return {
    asked,
    done,
    most: () => most,
    release: () => release(),
    fetch: async (count: number) => {
      asked.push(count);
      return queue.splice(0, count);
    },
    run: async (job: number) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await (job === 0 || ms === Infinity ? hang : new Promise((resolve) => setTimeout(resolve, ms)));
      inFlight -= 1;
      done.push(job);
    },
  };
}

const until = async (ok: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('deliveryPump', () => {
  it('refills each slot as its job ends while another job hangs, never running more than its slots', async () => {
    const h = harness(30, 5);
    const pump = deliveryPump({
      slots: 3,
      prefetch: 2,
      pollMs: 10_000,
      fetch: h.fetch,
      run: h.run,
      release: async () => undefined,
      onError: () => undefined,
    });
    // 29 jobs of 5 ms through the two slots job 0 leaves free: about 75 ms, far below the poll interval.
    await until(() => h.done.length === 29, 2000);
    expect(h.done).not.toContain(0);
    expect(h.most()).toBe(3);
    // Each fetch asks for the free slots and the prefetch: 3 + 2 at first, then, once the prefetched
    // ones are started and a slot is free again, 1 + 2: about one fetch per three jobs, not one per
    // job; and none while every slot is busy.
    expect(h.asked.slice(0, 2)).toEqual([5, 3]);
    expect(h.asked.length).toBeLessThanOrEqual(Math.ceil(29 / 2) + 2);
    h.release();
    await until(() => h.done.length === 30);
    await pump.stop(1000);
  });

  it('gives back what it fetched ahead after holdMs without a free slot, and fetches nothing while every slot is busy', async () => {
    const released: number[] = [];
    const h = harness(6, Infinity); // every job hangs
    const pump = deliveryPump({
      slots: 2,
      prefetch: 2,
      pollMs: 10_000,
      holdMs: 30,
      fetch: h.fetch,
      run: h.run,
      release: async (jobs) => void released.push(...jobs),
      onError: () => undefined,
    });
    await until(() => released.length === 2, 1000);
    expect(released).toEqual([2, 3]); // fetched ahead, then handed back for another worker with room
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(h.asked).toEqual([4]); // both slots still busy: no fetch since
    h.release();
    await until(() => h.asked.length >= 2);
    expect(h.asked[1]).toBe(4); // two free slots and the prefetch
    await until(() => h.done.length === 4); // the two it gave back are elsewhere now
    await pump.stop(100);
  });

  it('polls again after pollMs when the queue had fewer jobs than free slots', async () => {
    const h = harness(0, 1);
    const pump = deliveryPump({
      slots: 2,
      prefetch: 1,
      pollMs: 20,
      fetch: h.fetch,
      run: h.run,
      release: async () => undefined,
      onError: () => undefined,
    });
    await until(() => h.asked.length >= 3, 1000);
    await pump.stop(100);
    const calls = h.asked.length;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(h.asked).toHaveLength(calls); // stopped: no more fetches
  });

  it('keeps fetching after a failed fetch; stop hands back the jobs not started and waits for running ones only up to its timeout', async () => {
    let failures = 0;
    const errors: unknown[] = [];
    const released: number[] = [];
    const h = harness(6, Infinity);
    const pump = deliveryPump({
      slots: 2,
      prefetch: 2,
      pollMs: 10,
      fetch: async (count) => (failures++ < 2 ? Promise.reject(new Error('database down')) : h.fetch(count)),
      run: h.run,
      release: async (jobs) => void released.push(...jobs),
      onError: (error) => errors.push(error),
    });
    await until(() => h.most() === 2);
    expect(errors).toHaveLength(2);
    const started = Date.now();
    await pump.stop(50); // jobs 0 and 1 hang
    expect(Date.now() - started).toBeLessThan(1000);
    expect(released).toEqual([2, 3]); // fetched with the prefetch, never started
    h.release();
  });
});
