import { describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import { overloadGuard } from '../../src/http/overload.js';

const block = (ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end);
};

describe('event-loop delay sampling', () => {
  it('sees stalls that begin just as a sample falls due (the histogram alone loses them)', async () => {
    const guard = overloadGuard(
      { maxInFlight: 1, maxQueue: 1, maxQueueWaitMs: 1000, maxEventLoopDelayMs: 100, maxPoolWaiting: 1 },
      { poolWaiting: () => 0, registry: new Registry() },
    );
    try {
      // Created in the same tick as the guard's 500 ms sampler, this timer runs right after its
      // first sample: each 800 ms stall starts just after a reset of the histogram, which then
      // never records it. Two such windows in a row are saturation.
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          block(800);
          setTimeout(() => {
            block(800);
            resolve();
          }, 0);
        }, 500),
      );
      await new Promise((resolve) => setTimeout(resolve, 50)); // the sample after the second stall
      expect(guard.saturated()).toMatch(/^the event loop is \d+ ms behind$/);
      await new Promise((resolve) => setTimeout(resolve, 1100)); // two calm samples
      expect(guard.saturated()).toBeUndefined();
    } finally {
      guard.close();
    }
  });
});
