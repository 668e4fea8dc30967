import { describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from '../../src/config.js';
import { circuitOpenSeconds } from '../../src/webhooks/jobs/deliver.js';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
};

describe('webhook capacity settings', () => {
  it('default to 4 of a worker’s 8 slots per owner, 300 attempts a minute, and a circuit that opens after 5 timeouts for 60 s', () => {
    expect(loadConfig({}).webhooks).toMatchObject({
      concurrency: 8,
      endpointConcurrency: 2,
      ownerConcurrency: 4,
      ownerDeliveriesPerMinute: 300,
      circuitTimeouts: 5,
      circuitOpenSeconds: 60,
    });
  });

  it('keep the owner’s share below a worker’s slots: by default, and by refusing a setting that is not', () => {
    expect(loadConfig({ WEBHOOK_CONCURRENCY: '3' }).webhooks.ownerConcurrency).toBe(2);
    expect(loadConfig({ WEBHOOK_CONCURRENCY: '1' }).webhooks.ownerConcurrency).toBe(1);
    expect(loadConfig({ WEBHOOK_CONCURRENCY: '16', WEBHOOK_OWNER_CONCURRENCY: '6' }).webhooks.ownerConcurrency).toBe(6);
    expect(problemsOf({ WEBHOOK_OWNER_CONCURRENCY: '8' })).toEqual([
      'WEBHOOK_OWNER_CONCURRENCY must be below WEBHOOK_CONCURRENCY (8), so that one owner never takes every slot of a worker',
    ]);
    expect(problemsOf({ WEBHOOK_OWNER_DELIVERIES_PER_MINUTE: '0', WEBHOOK_CIRCUIT_TIMEOUTS: 'many' })).toHaveLength(2);
  });

  it('open a circuit twice as long each time in a row, up to an hour', () => {
    expect([0, 1, 2, 5, 6, 30].map((trips) => circuitOpenSeconds(60, trips))).toEqual([60, 120, 240, 1920, 3600, 3600]);
    expect(circuitOpenSeconds(3600, 3)).toBe(3600);
  });
});
