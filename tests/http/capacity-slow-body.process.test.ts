import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  closingSummary,
  few,
  Horde,
  latencySummary,
  metricSum,
  sleep,
  slowJsonBody,
  startTarget,
  startVictim,
  tally,
  verdictOf,
  victimFailures,
  type Target,
  type VictimCall,
} from '../helpers/attack.js';

/**
 * Attack: 70 sockets without a token, each sending POST /api/v1/tasks with Content-Length: 20000
 * and then one byte a second, replaced as the server closes them, for 6 s. Before the body
 * deadline each held a place of the load-shedding gate until the 15 s request timeout, and every
 * authenticated GET /api/v1/tasks was answered 503 after the 2 s queue wait.
 *
 * Expected (DESIGN rule 13): a body that trickles in holds no place of the gate; it gets 408
 * body-timeout after CLIENT_BODY_TIMEOUT_MS and its connection closes (or, beyond the tokenless
 * per-IP cap, 429 at once); a user with a token on the same address is not affected at all.
 */
const ATTACKERS = 70;
const ATTACK_MS = 6000;
const BODY_TIMEOUT_MS = 1500;
/** Node's bound on receiving a whole request: how long the server may let a refused (429) request's body keep coming before it closes. */
const CLIENT_REQUEST_TIMEOUT_MS = 4000;
/** Every victim call must be 2xx and answered within this, for the whole attack. */
const VICTIM_MAX_MS = 1000;
/** Lateness allowed for the server's timers and our 200 ms sampling of socket states, on a loaded machine. */
const SLACK_MS = 1500;
const BODY_TIMEOUT = '408 urn:tasks-api:problem:body-timeout';

let target: Target;
let victimToken: string;
let horde: Horde | undefined;
let calls: VictimCall[] = [];
const admitted: number[] = [];
let metrics = '';

beforeAll(async () => {
  target = await startTarget(
    {
      CLIENT_BODY_TIMEOUT_MS: String(BODY_TIMEOUT_MS),
      CLIENT_HEADERS_TIMEOUT_MS: '3000',
      CLIENT_REQUEST_TIMEOUT_MS: String(CLIENT_REQUEST_TIMEOUT_MS),
    },
    { postgres: process.env.TEST_DATABASE_URL },
  );
  victimToken = await target.tokenFor();
}, 60_000); // starting a server process: startMain allows it 45 s on a loaded machine

beforeAll(async () => {
  if (target === undefined) throw new Error('no server to attack');
  const victim = startVictim(target, victimToken);
  let sampling = true;
  let sampler: Promise<void> | undefined;
  try {
    await sleep(1000); // the victim alone first
    horde = new Horde(target, ATTACKERS, () => slowJsonBody(target)).start();
    sampler = (async () => {
      while (sampling) {
        await sleep(500);
        const text = await target.metrics().catch(() => '');
        admitted.push(metricSum(text, /^http_requests_admitted$/) ?? Number.NaN);
      }
    })();
    await sleep(ATTACK_MS);
  } finally {
    horde?.stop();
    sampling = false;
    calls = await victim.stop();
    await sampler;
  }
  // Every attacker connection, the last ones opened included, must be closed by the server by now.
  await horde.settle(Date.now() + CLIENT_REQUEST_TIMEOUT_MS + SLACK_MS);
  metrics = await target.metrics();
  process.stdout.write(
    `slow JSON bodies (${target.database}): ${horde.conns.length} attacker connections ${JSON.stringify(closingSummary(horde.conns))}; ` +
      `victim ${JSON.stringify(latencySummary(calls))}; admitted ${JSON.stringify(admitted)}\n`,
  );
}, 60_000);

afterAll(async () => {
  horde?.destroy();
  await target?.stop();
});

describe('70 tokenless sockets trickling JSON bodies at 1 byte/s', () => {
  it(`keeps answering an authenticated user on the same address 2xx within ${VICTIM_MAX_MS} ms`, () => {
    expect(few(victimFailures(calls, VICTIM_MAX_MS))).toEqual([]);
    expect(calls.length).toBeGreaterThanOrEqual(20);
  });

  it('holds no place of the load-shedding gate for a body still arriving', () => {
    expect(admitted.length).toBeGreaterThanOrEqual(5);
    expect(admitted.filter((n) => !(n <= 2))).toEqual([]);
  });

  it('answers each slow body 408 body-timeout, or 429 concurrency-limited with Retry-After, and nothing else', () => {
    const verdicts = tally(horde!.conns.map(verdictOf));
    const allowed = [
      '408 urn:tasks-api:problem:body-timeout',
      '429 urn:tasks-api:problem:concurrency-limited retry-after',
    ];
    expect(Object.fromEntries(Object.entries(verdicts).filter(([verdict]) => !allowed.includes(verdict)))).toEqual({});
    expect(verdicts['408 urn:tasks-api:problem:body-timeout'] ?? 0).toBeGreaterThan(0);
  });

  it(`answers 408 once the body deadline (${BODY_TIMEOUT_MS} ms after the headers) has passed, not before and at most ${SLACK_MS} ms after`, () => {
    const timedOut = horde!.conns.filter((c) => verdictOf(c) === BODY_TIMEOUT);
    expect(timedOut.length).toBeGreaterThan(0);
    const outside = timedOut
      .map((c) => c.firstByteAt! - c.sentAt!)
      .filter((ms) => ms < BODY_TIMEOUT_MS - 50 || ms > BODY_TIMEOUT_MS + SLACK_MS)
      .map((ms) => `408 after ${ms} ms`);
    expect(few(outside)).toEqual([]);
  });

  it(`closes a timed-out connection with its 408, and every attacker connection within ${CLIENT_REQUEST_TIMEOUT_MS} ms of its headers`, () => {
    const conns = horde!.conns;
    expect(conns.filter((c) => verdictOf(c) === BODY_TIMEOUT).length).toBeGreaterThan(0);
    const notClosedWith408 = conns
      .filter((c) => verdictOf(c) === BODY_TIMEOUT)
      .filter((c) => c.closedAt === undefined || c.closedAt - c.firstByteAt! > 500)
      .map(
        (c) =>
          `answered at +${c.firstByteAt! - c.sentAt!} ms, ${c.closedAt === undefined ? 'never closed' : `closed at +${c.closedAt - c.sentAt!} ms`}`,
      );
    expect(few(notClosedWith408)).toEqual([]);
    const lingering = conns
      .filter(
        (c) => c.closedAt === undefined || c.closedAt - (c.sentAt ?? c.openedAt) > CLIENT_REQUEST_TIMEOUT_MS + SLACK_MS,
      )
      .map(
        (c) =>
          `${verdictOf(c)}: ${c.closedAt === undefined ? 'still open' : `closed after ${c.closedAt - (c.sentAt ?? c.openedAt)} ms`}`,
      );
    expect(tally(lingering)).toEqual({});
  });

  it('counts the body timeouts (and any refusals) in /metrics', () => {
    expect(metricSum(metrics, /body.?timeout/i) ?? 0).toBeGreaterThan(0);
    if (horde!.conns.some((c) => verdictOf(c).startsWith('429')))
      expect(metricSum(metrics, /concurrency/i) ?? 0).toBeGreaterThan(0);
  });
});
