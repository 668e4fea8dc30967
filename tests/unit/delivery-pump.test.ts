import { describe, expect, it } from '@jest/globals';
import { deliveryPump } from '../../src/webhooks/jobs/pump.js';

/** A queue of numbered jobs; job 0 hangs until released, the others take `ms` each. */
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
      await (job === 0 ? hang : new Promise((resolve) => setTimeout(resolve, ms)));
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
    const pump = deliveryPump({ slots: 3, pollMs: 10_000, fetch: h.fetch, run: h.run, onError: () => undefined });
    // 29 jobs of 5 ms through the two slots job 0 leaves free: about 75 ms, far below the poll interval.
    await until(() => h.done.length === 29, 2000);
    expect(h.done).not.toContain(0);
    expect(h.most()).toBe(3);
    expect(h.asked[0]).toBe(3);
    expect(Math.max(...h.asked)).toBeLessThanOrEqual(3);
    h.release();
    await until(() => h.done.length === 30);
    await pump.stop(1000);
  });

  it('polls again after pollMs when the queue had fewer jobs than free slots', async () => {
    const h = harness(0, 1);
    const pump = deliveryPump({ slots: 2, pollMs: 20, fetch: h.fetch, run: h.run, onError: () => undefined });
    await until(() => h.asked.length >= 3, 1000);
    await pump.stop(100);
    const calls = h.asked.length;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(h.asked).toHaveLength(calls); // stopped: no more fetches
  });

  it('keeps fetching after a failed fetch, and stop waits for running jobs only up to its timeout', async () => {
    let failures = 0;
    const errors: unknown[] = [];
    const h = harness(2, 1);
    const pump = deliveryPump({
      slots: 2,
      pollMs: 10,
      fetch: async (count) => (failures++ < 2 ? Promise.reject(new Error('database down')) : h.fetch(count)),
      run: h.run,
      onError: (error) => errors.push(error),
    });
    await until(() => h.done.includes(1));
    expect(errors).toHaveLength(2);
    const started = Date.now();
    await pump.stop(50); // job 0 hangs
    expect(Date.now() - started).toBeLessThan(1000);
    h.release();
  });
});
