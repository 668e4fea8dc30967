import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/database.js';
import { listen, ListenFailed } from '../../src/http/http-server.js';
import { migratedPgliteDir, runToEnd, startMain } from '../helpers/process.js';
import { refusedPort } from '../helpers/refused-port.js';
import { scratchDatabase } from '../helpers/server.js';

/**
 * Every start-up failure an operator can fix is one line on stderr saying what to do, exit code 1
 * and no stack, from `npm start` (src/main.ts) and `npm run worker` (src/worker.ts) alike, as for a
 * port that cannot be taken (below); a bug keeps its stack.
 */

const dataDir = migratedPgliteDir('tasks-startup-');
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const onPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

/** An entry point as its own process with `env` (development, PGlite in `dataDir` unless DATABASE_URL): exit code and output. */
function run(
  env: Record<string, string>,
  args = ['src/main.ts'],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runToEnd(args, {
    NODE_ENV: 'development',
    LOG_FORMAT: 'json',
    JWT_SECRET: randomBytes(32).toString('base64url'),
    AUTH_BUILTIN: 'false',
    WEBHOOK_WORKER: 'off',
    PGLITE_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    ...env,
  });
}

/** Exit code 1, and stderr is this one line alone: no stack anywhere. */
function expectOneLine(result: { code: number | null; stdout: string; stderr: string }, line: string | RegExp) {
  expect(result.code).toBe(1);
  const lines = result.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  if (typeof line === 'string') expect(lines[0]).toBe(line);
  else expect(lines[0]).toMatch(line);
  expect(`${result.stdout}${result.stderr}`).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toContain('fatal');
}

/**
 * A stand-in PostgreSQL server on loopback that answers every startup message with a FATAL
 * ErrorResponse carrying `sqlstate` and `message` (the protocol's own refusal, as a server with
 * password authentication or a strict pg_hba.conf sends it), or closes the connection at once.
 */
async function refusingPostgres(answer: { sqlstate: string; message: string } | 'close'): Promise<{
  url: (user?: string, database?: string) => string;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (answer === 'close') {
      socket.destroy();
      return;
    }
    socket.once('data', () => {
      const fields = Buffer.concat(
        [
          ['S', 'FATAL'],
          ['V', 'FATAL'],
          ['C', answer.sqlstate],
          ['M', answer.message],
        ]
          .map(([type, value]) => Buffer.from(`${type}${value}\0`, 'utf8'))
          .concat(Buffer.from([0])),
      );
      const head = Buffer.alloc(5);
      head.write('E', 0);
      head.writeUInt32BE(4 + fields.length, 1);
      socket.end(Buffer.concat([head, fields]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: (user = 'alice', database = 'tasks') => `postgres://${user}:not-the-password@127.0.0.1:${port}/${database}`,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Where nothing listens: connections are refused (see refusedPort). */
let nobody: number;
beforeAll(async () => {
  nobody = await refusedPort();
});

describe('PostgreSQL not there, or refusing the login', () => {
  it('ECONNREFUSED: names host:port, for the API, the worker and a WEB_CONCURRENCY cluster (once)', async () => {
    const url = `postgres://postgres@127.0.0.1:${nobody}/tasks`;
    const line = `Cannot connect to PostgreSQL at 127.0.0.1:${nobody}: connection refused (no server listens there). Start PostgreSQL, or fix the host and port in DATABASE_URL.`;
    const [api, worker, cluster] = await Promise.all([
      run({ DATABASE_URL: url }),
      run({ DATABASE_URL: url }, ['src/worker.ts']),
      // Each of the three workers fails alike; the primary prints the line once and exits 1 instead of forking again.
      run({ DATABASE_URL: url, WEB_CONCURRENCY: '3' }),
    ]);
    expectOneLine(api, line);
    expectOneLine(worker, line);
    expectOneLine(cluster, line);
    expect(cluster.stdout).not.toContain('worker died');
  }, 60_000);

  it('28P01, a wrong password: names the server and says to fix the user and password, never printing the password', async () => {
    const server = await refusingPostgres({
      sqlstate: '28P01',
      message: 'password authentication failed for user "alice"',
    });
    try {
      const result = await run({ DATABASE_URL: server.url() });
      expectOneLine(
        result,
        /^PostgreSQL at 127\.0\.0\.1:\d+ refused the login: password authentication failed for user "alice"\. Fix the user name and password in DATABASE_URL/,
      );
      expect(result.stderr).not.toContain('not-the-password');
    } finally {
      await server.close();
    }
  }, 30_000);

  it("28000 from pg_hba.conf: the server's reason and where to fix it", async () => {
    const server = await refusingPostgres({
      sqlstate: '28000',
      message: 'no pg_hba.conf entry for host "127.0.0.1", user "alice", database "tasks", no encryption',
    });
    try {
      expectOneLine(
        await run({ DATABASE_URL: server.url() }, ['src/worker.ts']),
        /^PostgreSQL at 127\.0\.0\.1:\d+ refused the login: no pg_hba\.conf entry for host "127\.0\.0\.1", user "alice", database "tasks", no encryption\. Fix the user in DATABASE_URL, or let this client in through the server's pg_hba\.conf\.$/,
      );
    } finally {
      await server.close();
    }
  }, 30_000);

  it("3D000 from a server that says so, and a port that is not PostgreSQL's (the connection closes)", async () => {
    const missing = await refusingPostgres({ sqlstate: '3D000', message: 'database "tasks" does not exist' });
    const closing = await refusingPostgres('close');
    try {
      const [noDatabase, notPostgres] = await Promise.all([
        run({ DATABASE_URL: missing.url() }),
        run({ DATABASE_URL: closing.url() }),
      ]);
      expectOneLine(
        noDatabase,
        /^Database "tasks" does not exist on PostgreSQL at 127\.0\.0\.1:(\d+): create it \(`createdb -h 127\.0\.0\.1 -p \1 -U alice tasks`, or CREATE DATABASE "tasks"; in psql\), or fix the database name in DATABASE_URL\.$/,
      );
      expectOneLine(
        notPostgres,
        /^PostgreSQL at 127\.0\.0\.1:\d+ closed the connection before answering: is that port a PostgreSQL server's\? Check the host and port in DATABASE_URL\.$/,
      );
    } finally {
      await missing.close();
      await closing.close();
    }
  }, 30_000);
});

onPostgres("TEST_DATABASE_URL's PostgreSQL server", () => {
  const server = () => new URL(process.env.TEST_DATABASE_URL!);
  const where = () => `${server().hostname}:${server().port || '5432'}`;

  it('3D000: a DATABASE_URL naming a database that does not exist says which and how to create it (API and worker)', async () => {
    const name = `tasks_missing_${randomBytes(4).toString('hex')}`;
    const url = Object.assign(server(), { pathname: `/${name}` }).href;
    const user = decodeURIComponent(server().username);
    const line = `Database "${name}" does not exist on PostgreSQL at ${where()}: create it (\`createdb -h ${server().hostname} -p ${server().port || '5432'}${user ? ` -U ${user}` : ''} ${name}\`, or CREATE DATABASE "${name}"; in psql), or fix the database name in DATABASE_URL.`;
    const [api, worker] = await Promise.all([
      run({ DATABASE_URL: url }),
      run({ DATABASE_URL: url }, ['src/worker.ts']),
    ]);
    expectOneLine(api, line);
    expectOneLine(worker, line);
  }, 30_000);

  it('28000: a role that does not exist', async () => {
    const role = `tasks_nobody_${randomBytes(4).toString('hex')}`;
    const url = Object.assign(server(), { username: role, password: '' }).href;
    expectOneLine(
      await run({ DATABASE_URL: url }),
      `PostgreSQL at ${where()} refused the login: role "${role}" does not exist. Fix the user in DATABASE_URL, or create the role (\`createuser -h ${server().hostname} -p ${server().port || '5432'} ${role}\`).`,
    );
  }, 30_000);
});

onPostgres('a role that may not create the tables', () => {
  it('a fresh database whose schema the role may not create in (PostgreSQL 15 grants no one CREATE on public): says what to grant', async () => {
    const scratch = await scratchDatabase({ empty: true });
    const role = `tasks_nocreate_${randomBytes(4).toString('hex')}`;
    const admin = await openDatabase({ url: scratch.url!, poolMax: 1 });
    try {
      await sql`create role ${sql.id(role)} login`.execute(admin.db);
      await sql`revoke create on schema public from public`.execute(admin.db);
      const url = Object.assign(new URL(scratch.url!), { username: role, password: '' }).href;
      const line = `The database role "${role}" may not create tables in schema "public", so the migrations cannot run: grant it (GRANT CREATE ON SCHEMA public TO "${role}"; since PostgreSQL 15 no role has it by default) or put the database owner's role in DATABASE_URL.`;
      const [api, worker] = await Promise.all([
        run({ DATABASE_URL: url }),
        run({ DATABASE_URL: url }, ['src/worker.ts']),
      ]);
      expectOneLine(api, line);
      expectOneLine(worker, line);
    } finally {
      await admin.close();
      await scratch.drop();
      const base = await openDatabase({ url: process.env.TEST_DATABASE_URL!, poolMax: 1 });
      await sql`drop role if exists ${sql.id(role)}`.execute(base.db);
      await base.close();
    }
  }, 60_000);
});

describe('the signing keys and KEY_ENCRYPTION_SECRET', () => {
  it('production with secret A, then with secret B: one line saying the secret differs and what to do', async () => {
    // A fresh PostgreSQL database when there is a server, else an embedded one in a directory.
    const scratch = await scratchDatabase({ empty: true });
    const pgliteDir = migratedPgliteDir('tasks-keys-');
    const store: Record<string, string> =
      scratch.url === undefined ? { PGLITE_DIR: pgliteDir } : { DATABASE_URL: scratch.url };
    const production = (secret: string) => ({
      ...store,
      AUTH_BUILTIN: 'true',
      KEY_ENCRYPTION_SECRET: secret,
      WEBHOOK_WORKER: 'off',
    });
    try {
      // Secret A: the first start makes the signing key and stores it encrypted with A.
      const first = await startMain(production(randomBytes(32).toString('base64url')));
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      const second = await run({
        ...production(randomBytes(32).toString('base64url')),
        NODE_ENV: 'production',
        JWT_SECRET: '',
      });
      expectOneLine(
        second,
        /^The built-in issuer's signing keys were encrypted with another KEY_ENCRYPTION_SECRET: key [\w-]{43} does not decrypt with this one\. Start with the secret they were written with; if it is lost, delete the rows of signing_keys/,
      );

      // Development without the secret: the keys are encrypted, and it says to set it.
      const unset = await run({ ...store, AUTH_BUILTIN: 'true', KEY_ENCRYPTION_SECRET: '' });
      expectOneLine(
        unset,
        /^The built-in issuer's signing keys are stored encrypted \(key [\w-]{43}\): set KEY_ENCRYPTION_SECRET to the secret they were written with\.$/,
      );
    } finally {
      await scratch.drop();
      rmSync(pgliteDir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('other start-up failures', () => {
  it('configuration: one problem is one line', async () => {
    expectOneLine(
      await run({ PORT: 'abc' }),
      'Invalid configuration: PORT must be an integer from 0 to 65535 (got "abc")',
    );
  }, 30_000);

  // The server listens after opening the database (this file's migrated copy, see `run`).
  it('a HOST that is not an address of this machine', async () => {
    expectOneLine(
      await run({ HOST: '192.0.2.1' }), // TEST-NET-1: never a local address
      "Cannot listen on 192.0.2.1: that address is not one of this machine's. Set HOST to one of its addresses (0.0.0.0 for all of them, 127.0.0.1 for this machine alone).",
    );
  }, 60_000);

  it("a bug keeps its stack: anything not known to be the operator's to fix", async () => {
    const result = await run({}, [
      '--input-type=module',
      '-e',
      "const { exitOnFailure } = await import('./src/entrypoint.ts'); await exitOnFailure(new TypeError('a bug'));",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^fatal: TypeError: a bug\n\s+at /);
  }, 30_000);
});

describe('a port that cannot be taken', () => {
  let holder: Server;
  let port: number;
  beforeAll(async () => {
    // Something else holds the port: a plain listener on loopback.
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    port = (holder.address() as { port: number }).port;
  });
  afterAll(() => new Promise((resolve) => holder.close(resolve)));

  it('EADDRINUSE: one line naming the port and what to do, exit 1, no stack', async () => {
    expectOneLine(
      await run({ PORT: String(port) }),
      `Cannot listen on 127.0.0.1:${port}: it is already in use (another tasks-api, or an earlier run still going?). Stop that process, or set PORT to a free port (PORT=0 picks one).`,
    );
  }, 30_000);

  it('EACCES on a privileged port: one line with a hint (as a user who may not bind it)', async () => {
    if (process.getuid?.() !== 0) {
      expectOneLine(
        await run({ PORT: '80' }),
        'Cannot listen on 127.0.0.1:80: permission denied (ports below 1024 need privileges). Set PORT to a port above 1023.',
      );
      return;
    }
    // root may bind port 80: the refusal the kernel would give anyone else, handed to listen().
    const server = createHttpServer();
    server.listen = function fakeListen(this: HttpServer) {
      process.nextTick(() =>
        this.emit(
          'error',
          Object.assign(new Error('listen EACCES: permission denied 127.0.0.1:80'), { code: 'EACCES' }),
        ),
      );
      return this;
    } as never;
    const error = await listen(server, 80, '127.0.0.1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ListenFailed);
    expect((error as Error).message).toBe(
      'Cannot listen on 127.0.0.1:80: permission denied (ports below 1024 need privileges). Set PORT to a port above 1023.',
    );
  }, 30_000);
});
