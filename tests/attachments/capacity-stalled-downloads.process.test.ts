import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  createTask,
  drainClosed,
  few,
  Horde,
  latencySummary,
  metricSum,
  mostAtOnce,
  responseOf,
  rssSampler,
  sleep,
  stalledDownload,
  startTarget,
  startVictim,
  tally,
  uploadAttachment,
  verdictOf,
  victimFailures,
  type Conn,
  type Target,
  type VictimCall,
} from '../helpers/attack.js';
import { png } from '../helpers/files.js';

/**
 * Attack: one user's token, 66 sockets each asking for the same 10 MiB attachment
 * (GET /api/v1/attachments/{id}/content), reading the response's head and then never reading
 * again, replaced as the server closes them, for 10 s. Before, each download held a place of the
 * load-shedding gate and buffered megabytes: 503 for everyone for 140 s, RSS 130 → 334 MB.
 *
 * Expected (DESIGN rule 14): downloads hold no place of the gate; one user has at most
 * DOWNLOADS_PER_USER (4) at once, the rest get 429 at once; a download slower than
 * TRANSFER_MIN_BYTES_PER_SECOND (1024) over TRANSFER_RATE_WINDOW_MS has its connection
 * destroyed; a stalled reader's memory is bounded.
 *
 * PostgreSQL only (TEST_DATABASE_URL), where the review measured it. On PGlite neither figure says
 * anything about these limits: PGlite runs each statement synchronously on the event loop, and
 * reading a download's bytea chunks blocks it for seconds (with four ordinary downloads read to
 * the end, /health/live took 2-3.5 s and API calls 4-10 s, before this change as after it), and
 * its WASM heap grows with large reads and never shrinks.
 */
const ATTACKERS = 66;
const ATTACK_MS = 10_000;
const FILE_BYTES = 10 * 1024 * 1024;
const DOWNLOADS_PER_USER = 4;
const RATE_WINDOW_MS = 2000;
const KEEP_ALIVE_TIMEOUT_MS = 2000;
/**
 * Every victim call must be 2xx and answered within this, for the whole attack. Wider than for
 * the slow bodies and uploads: when the attack lands, its 66 requests and the four downloads it
 * may start (each pushing about 4 MiB into the kernel's buffers at once, then again at every
 * replacement) are processed ahead of a victim request that arrives in the same instant — its
 * handler then runs in milliseconds, but it waits 0.5-1 s to start on this two-core machine
 * (measured 0.54-1.01 s; 2.3 s once at load 9). Before the change the victim got 503 after the
 * 2 s queue wait, and for as long as the downloads were held.
 */
const VICTIM_MAX_MS = 2000;
/** Lateness allowed for the server's timers and our 200 ms sampling of socket states, on a loaded machine. */
const SLACK_MS = 1500;
/** A stalled download is cut once a window has passed in which it moved less than the minimum: within three windows of its start (the kernel's buffers take the first megabytes at once). */
const CUT_WITHIN_MS = 3 * RATE_WINDOW_MS + SLACK_MS;
/**
 * The server's RSS may grow by less than this over its RSS just before the attack (measured with
 * a download already done, so the download path's code and pools are in). Before the change it
 * grew by 177-194 MB here (e.g. 266 → 460 MB, 64 stalled readers); with the change by 18-27 MB
 * (four stalled readers at a time, each having sent about 4 MiB into the kernel's buffers before
 * it stalled, cut after 3.4-4.2 s) on Node 20, by 44 MB once on Node 24 beside a second jest
 * worker, and by 88 MB once on Node 24 in CI (2026-12-05, PostgreSQL suite), which failed the 80 MB
 * bound this had. The bound sits well under the unbounded growth and above the noise of either
 * runtime seen so far.
 */
const RSS_GROWTH_MAX_MB = 110;

const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

onPostgres('66 sockets of one user downloading a 10 MiB attachment and never reading', () => {
  let target: Target;
  let attackerToken: string;
  let victimToken: string;
  let attachmentId: string;
  let horde: Horde | undefined;
  let calls: VictimCall[] = [];
  let rssBefore = 0;
  let rssPeak = 0;
  let metrics = '';
  const drains: Promise<void>[] = [];

  beforeAll(async () => {
    target = await startTarget(
      {
        TRANSFER_RATE_WINDOW_MS: String(RATE_WINDOW_MS),
        DOWNLOADS_PER_USER: String(DOWNLOADS_PER_USER),
        KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
      },
      { postgres: process.env.TEST_DATABASE_URL },
    );
    attackerToken = await target.tokenFor();
    victimToken = await target.tokenFor();
    const taskId = await createTask(target, attackerToken, 'holds a big file');
    attachmentId = await uploadAttachment(target, attackerToken, taskId, png(FILE_BYTES), 'image/png');
    // One ordinary download, read to the end: the file is there, and the download path is warm.
    const res = await fetch(`${target.url}/api/v1/attachments/${attachmentId}/content`, {
      headers: { Authorization: `Bearer ${attackerToken}` },
    });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(FILE_BYTES);
  }, 60_000);

  beforeAll(async () => {
    if (target === undefined) throw new Error('no server to attack');
    const victim = startVictim(target, victimToken);
    let rss: ReturnType<typeof rssSampler> | undefined;
    try {
      await sleep(1000); // the victim alone first
      rssBefore = target.rssMb();
      rss = rssSampler(target.pid);
      horde = new Horde(target, ATTACKERS, () => stalledDownload(target, { token: attackerToken, attachmentId }), {
        // A connection the server closed: read what the kernel still holds of it, to know how much of the file it got.
        onServerClosed: (conn) => drains.push(drainClosed(conn)),
      }).start();
      await sleep(ATTACK_MS);
    } finally {
      horde?.stop();
      calls = await victim.stop();
    }
    await horde.settle(Date.now() + CUT_WITHIN_MS);
    rssPeak = rss.stop();
    await Promise.all(drains);
    metrics = await target.metrics();
    process.stdout.write(
      `stalled downloads (${target.database}): ${horde.conns.length} attacker connections ${JSON.stringify(tally(horde.conns.map(verdictOf)))}; ` +
        `victim ${JSON.stringify(latencySummary(calls))}; RSS ${rssBefore.toFixed(0)} MB before, peak ${rssPeak.toFixed(0)} MB; ` +
        `downloads got ${downloads()
          .slice(0, 8)
          .map(
            (c) =>
              `${(c.received / 1048576).toFixed(1)} MiB in ${c.closedAt === undefined ? '∞' : c.closedAt - c.firstByteAt!} ms`,
          )
          .join(', ')}\n`,
    );
  }, 60_000);

  afterAll(async () => {
    horde?.destroy();
    await target?.stop();
  });

  const downloads = (): Conn[] => horde!.conns.filter((c) => responseOf(c).status === 200);

  it(`keeps answering another user 2xx within ${VICTIM_MAX_MS} ms`, () => {
    expect(few(victimFailures(calls, VICTIM_MAX_MS))).toEqual([]);
    expect(calls.length).toBeGreaterThanOrEqual(20);
  });

  it('answers each request 200 (a download) or 429 concurrency-limited with Retry-After, and nothing else', () => {
    const verdicts = tally(horde!.conns.map(verdictOf));
    const allowed = ['200', '429 urn:tasks-api:problem:concurrency-limited retry-after'];
    expect(Object.fromEntries(Object.entries(verdicts).filter(([verdict]) => !allowed.includes(verdict)))).toEqual({});
    expect(verdicts['200'] ?? 0).toBeGreaterThan(0);
  });

  it(`never runs more than DOWNLOADS_PER_USER (${DOWNLOADS_PER_USER}) downloads of one user at once`, () => {
    // Each download from its first byte to when the server closed it, less the lateness with which
    // a loaded machine lets us see that close (SLACK_MS): the next one may start the moment it is.
    expect(
      mostAtOnce(
        downloads().map((c) => [c.firstByteAt!, (c.closedAt ?? Number.POSITIVE_INFINITY) - SLACK_MS] as const),
      ),
    ).toBeLessThanOrEqual(DOWNLOADS_PER_USER);
  });

  it(`destroys each stalled download's connection within ${CUT_WITHIN_MS} ms, before the file is through`, () => {
    const notCut = downloads()
      .filter(
        (c) => c.closedAt === undefined || c.closedAt - c.firstByteAt! > CUT_WITHIN_MS || c.received >= FILE_BYTES,
      )
      .map(
        (c) =>
          `${c.closedAt === undefined ? 'never closed' : `closed after ${c.closedAt - c.firstByteAt!} ms`}, ${c.received} bytes received`,
      );
    expect(few(notCut)).toEqual([]);
  });

  it(`keeps the server's memory bounded: RSS grows by less than ${RSS_GROWTH_MAX_MB} MB`, () => {
    expect(Math.round(rssPeak - rssBefore)).toBeLessThan(RSS_GROWTH_MAX_MB);
  });

  it('closes every attacker connection by itself once the attack stops', () => {
    expect(tally(horde!.openConns().map(verdictOf))).toEqual({});
  });

  it('counts the downloads ended as too slow in /metrics', () => {
    expect(metricSum(metrics, /slow/i) ?? 0).toBeGreaterThan(0);
  });
});
