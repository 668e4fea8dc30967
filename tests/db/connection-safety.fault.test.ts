import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TasksClient } from '../../packages/client/src/index.js';
import { pgProxy } from '../helpers/pg-proxy.js';
import { startupParametersReachServer } from '../helpers/pooler.js';
import { newUser, startServer } from '../helpers/server.js';

// The proxy stands in front of a real PostgreSQL server (PGlite has no connections to lose).
const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

// The tests of the server-side timeouts the app sets (1 s here) need them to reach PostgreSQL; through
// a transaction-mode pooler the pooler's own apply instead (scripts/pgbouncer.sh), so they run only
// on a direct connection (CI runs them in its "tests on PostgreSQL" step).
const appTimeoutsReachServer = process.env.TEST_DATABASE_URL
  ? await startupParametersReachServer(process.env.TEST_DATABASE_URL)
  : true;
const withAppTimeouts = appTimeoutsReachServer ? it : it.skip;
if (!appTimeoutsReachServer) {
  process.stderr.write(
    'connection-safety: 3 tests of the app-set server-side timeouts skipped: TEST_DATABASE_URL is a pooler that does not pass startup parameters on\n',
  );
}

/** Short timeouts, so the faults below outlast them quickly: server side 1 s, client side 1.5 s. */
const TIMEOUTS = { statementTimeoutMs: 1000, queryTimeoutMs: 1500 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

onPostgres('a slow or silent database never leaves a pooled connection inside a transaction', () => {
  /** A connection straight to PostgreSQL, not through the proxy: it sees only committed rows. */
  let direct: pg.Pool;
  const opened: { close(): Promise<void> }[] = [];
  beforeAll(() => {
    direct = new pg.Pool({ connectionString: process.env.TEST_DATABASE_URL, max: 2 });
  });
  afterAll(async () => {
    for (const rig of opened) await rig.close();
    await direct?.end();
  });

  /**
   * The API behind a proxy to PostgreSQL, with a pool of two and short timeouts, and two users.
   * Its sessions carry their own application_name, so pg_stat_activity shows exactly them.
   */
  async function rig(databaseOptions: { idleInTransactionTimeoutMs?: number } = {}) {
    const appName = `tasks_safety_${randomBytes(4).toString('hex')}`;
    const target = new URL(process.env.TEST_DATABASE_URL!);
    target.searchParams.set('application_name', appName);
    const proxy = await pgProxy(target);
    const server = await startServer({
      databaseUrl: proxy.url,
      requestTimeoutMs: 5000,
      databaseOptions: { poolMax: 2, ...TIMEOUTS, ...databaseOptions },
    });
    const users: { owner: string; api: TasksClient }[] = [];
    for (const owner of [newUser(), newUser()]) users.push({ owner, api: server.client(await server.tokenFor(owner)) });
    const close = async () => {
      await server.close();
      await proxy.close();
    };
    opened.push({ close });

    const committedTitles = async (ids: string[]) =>
      new Map(
        (
          await direct.query<{ id: string; title: string }>('select id, title from tasks where id = any($1::uuid[])', [
            ids,
          ])
        ).rows.map((r) => [r.id, r.title]),
      );
    const sessionsInTransaction = async () =>
      (
        await direct.query<{ pid: number }>(
          "select pid from pg_stat_activity where application_name = $1 and state like 'idle in transaction%'",
          [appName],
        )
      ).rows.map((r) => r.pid);
    /** Every acknowledged task is in its owner's list and in no one else's. */
    const expectIsolated = async (acknowledged: Map<string, string>) => {
      for (const { owner, api } of users) {
        const seen = new Set<string>();
        let cursor: string | undefined;
        do {
          const { data, response } = await api.GET('/api/v1/tasks', {
            params: { query: { limit: 100, ...(cursor ? { cursor } : {}) } },
          });
          expect(response.status).toBe(200);
          for (const task of data!.items) seen.add(task.id);
          cursor = data!.next_cursor ?? undefined;
        } while (cursor);
        const mine = [...acknowledged].filter(([, o]) => o === owner).map(([id]) => id);
        expect(mine.filter((id) => !seen.has(id))).toEqual([]);
        expect([...seen].filter((id) => acknowledged.has(id) && acknowledged.get(id) !== owner)).toEqual([]);
      }
    };
    /** A create, checked at once through the direct connection: acknowledged means committed. */
    const create = async (i: number, acknowledged: Map<string, string>, idempotent = false) => {
      const { owner, api } = users[i % 2]!;
      const title = `write ${i} ${randomUUID()}`;
      const { response, data } = await api.POST('/api/v1/tasks', {
        body: { title },
        ...(idempotent ? { params: { header: { 'Idempotency-Key': randomUUID() } } } : {}),
      });
      if (response.status === 201) {
        expect((await committedTitles([data!.id])).get(data!.id)).toBe(title);
        acknowledged.set(data!.id, owner);
      }
      return response.status;
    };
    return { proxy, server, users, committedTitles, sessionsInTransaction, expectIsolated, create };
  }

  // The first two leave PostgreSQL's own idle-in-transaction timeout off: the client alone must cope.
  it('a BEGIN answered after the client gave up: 503, the connection is destroyed, every later write is committed when acknowledged', async () => {
    const { proxy, server, users, sessionsInTransaction, expectIsolated, create } = await rig({
      idleInTransactionTimeoutMs: 0,
    });
    const late = proxy.delayReply('BEGIN', 2500);
    // An idempotent create runs its writes in a transaction: its BEGIN is the one delayed.
    const first = users[0]!.api.POST('/api/v1/tasks', {
      body: { title: 'idempotent' },
      params: { header: { 'Idempotency-Key': randomUUID() } },
    });
    await late;
    expect((await first).response.status).toBe(503);

    // Writes from two users, before, while and after the late reply arrives on the old connection.
    const acknowledged = new Map<string, string>();
    const statuses: number[] = [];
    const until = Date.now() + 4000;
    for (let i = 0; Date.now() < until; i += 1) statuses.push(await create(i, acknowledged));
    expect(statuses.filter((status) => status !== 201 && status !== 503)).toEqual([]);
    expect(acknowledged.size).toBeGreaterThan(10);
    expect(
      server.logs.some((line) => line.message === 'database connection discarded' && line.reason === 'failed'),
    ).toBe(true);
    expect(await (await fetch(`${server.url}/metrics`)).text()).toMatch(
      /^db_connections_discarded_total\{reason="failed"\} [1-9]\d*$/m,
    );

    expect(await sessionsInTransaction()).toEqual([]);
    await expectIsolated(acknowledged);
  }, 20_000);

  it('every reply held longer than the timeouts, from a BEGIN on, then let go: 503s while it lasts, no acknowledged write left uncommitted', async () => {
    const { proxy, users, committedTitles, sessionsInTransaction, expectIsolated, create } = await rig({
      idleInTransactionTimeoutMs: 0,
    });
    const acknowledged = new Map<string, string>();
    const statuses: number[] = [];
    let n = 0;
    const until = Date.now() + 5000;
    // Four clients: plain creates, idempotent creates (transactions) and updates of acknowledged tasks.
    const client = async (k: number) => {
      while (Date.now() < until) {
        n += 1;
        if (k === 3 && acknowledged.size > 0) {
          const [id, owner] = [...acknowledged][n % acknowledged.size]!;
          const { api } = users.find((u) => u.owner === owner)!;
          const title = `updated ${randomUUID()}`;
          const { response } = await api.PATCH('/api/v1/tasks/{taskId}', {
            params: { path: { taskId: id } },
            body: { title },
          });
          statuses.push(response.status);
          if (response.status === 200) expect((await committedTitles([id])).get(id)).toBe(title);
        } else {
          statuses.push(await create(n, acknowledged, k === 2));
        }
      }
    };
    const hang = (async () => {
      await sleep(1000);
      // From a BEGIN's reply on, so that at least one transaction is opened behind the client's back.
      await proxy.holdFrom('BEGIN');
      await sleep(2500); // past the client's 1.5 s
      proxy.release();
    })();
    await Promise.all([client(0), client(1), client(2), client(3), hang]);

    expect(statuses.filter((status) => ![200, 201, 503].includes(status))).toEqual([]);
    expect(statuses.filter((status) => status === 503).length).toBeGreaterThan(0);
    expect(acknowledged.size).toBeGreaterThan(10);
    await sleep(200);
    expect(await sessionsInTransaction()).toEqual([]);
    await expectIsolated(acknowledged);
  }, 30_000);

  withAppTimeouts(
    'a client cut off inside a transaction (a partition): PostgreSQL ends the transaction itself',
    async () => {
      const { proxy, users, sessionsInTransaction, create } = await rig();
      const late = proxy.delayReply('BEGIN', 10_000);
      const request = users[0]!.api.POST('/api/v1/tasks', {
        body: { title: 'cut off' },
        params: { header: { 'Idempotency-Key': randomUUID() } },
      });
      await late;
      // The server has opened the transaction and waits for the next statement that never comes.
      expect(await sessionsInTransaction()).toHaveLength(1);
      proxy.sever();
      expect((await request).response.status).toBe(503);
      const started = Date.now();
      while ((await sessionsInTransaction()).length > 0 && Date.now() - started < 5000) await sleep(100);
      expect(await sessionsInTransaction()).toEqual([]);
      // idle_in_transaction_session_timeout (1 s here), not the proxy closing: it is still open.
      expect(Date.now() - started).toBeLessThan(3000);

      // The pool replaces what it lost and the next write is committed when acknowledged.
      let status = 0;
      for (let i = 0; i < 10 && status !== 201; i += 1) status = await create(i, new Map());
      expect(status).toBe(201);
    },
    20_000,
  );

  withAppTimeouts(
    'a statement stuck behind a lock: PostgreSQL cancels it at statement_timeout, 503 with Retry-After, and the pool carries on',
    async () => {
      const { server, users, create } = await rig();
      const acknowledged = new Map<string, string>();
      expect(await create(0, acknowledged)).toBe(201);
      const [id] = [...acknowledged.keys()];
      const locker = await direct.connect();
      try {
        await locker.query('begin');
        await locker.query('select 1 from tasks where id = $1 for update', [id]);
        const started = Date.now();
        const { response, error } = await users[0]!.api.PATCH('/api/v1/tasks/{taskId}', {
          params: { path: { taskId: id! } },
          body: { completed: true },
        });
        expect(response.status).toBe(503);
        expect(response.headers.get('retry-after')).toBe('5');
        expect(JSON.stringify(error)).not.toMatch(/statement|cancel|timeout|update/i);
        // Cancelled by the server at its 1 s (SQLSTATE 57014), not given up by the client at 1.5 s.
        expect(server.logs.some((line) => /statement timeout/.test(String(line.cause)))).toBe(true);
        expect(Date.now() - started).toBeLessThan(5000);
      } finally {
        await locker.query('rollback');
        locker.release();
      }
      // The pool carries on: the next write goes through. A few tries, as above: with the suite's
      // other files loading the two cores, one write can itself pass this rig's 1 s statement timeout.
      let status = 0;
      for (let i = 0; i < 5 && status !== 200; i += 1) {
        const { response } = await users[0]!.api.PATCH('/api/v1/tasks/{taskId}', {
          params: { path: { taskId: id! } },
          body: { completed: true },
        });
        status = response.status;
      }
      expect(status).toBe(200);
    },
  );

  withAppTimeouts('sets the server-side timeouts on every session of the pool, below the client-side one', async () => {
    const { server } = await rig();
    const settings = await server.database.pool!.query<{ s: string; i: string }>(
      "select current_setting('statement_timeout') as s, current_setting('idle_in_transaction_session_timeout') as i",
    );
    expect(settings.rows[0]).toEqual({ s: '1s', i: '1s' });
  });
});
