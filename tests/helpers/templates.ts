import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { transform } from '@swc/core';
import { sql } from 'kysely';
import { projectRoot } from '../../src/http/contract.js';
import { openDatabase } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';

/**
 * What jest's globalSetup does (tests/helpers/global-setup.js loads this through tsx): the
 * migrations run once per `npm test`, not once per test server.
 *
 * - PGlite: one in-memory database is migrated and its data directory dumped to a file
 *   (TEST_PGLITE_TEMPLATE); every test server loads a fresh copy of it (`testDatabase`), so each
 *   still has a database of its own, in about a third of the time initdb and the migrations took.
 *   The same data directory is also written out on disk (TEST_PGLITE_DATA_DIR) for the tests that
 *   start src/main.ts as a process: each copies it (`migratedPgliteDir`) and the process starts in
 *   about 2 s of CPU instead of 6 (initdb and the migrations at every start). Both are kept
 *   between runs in .cache/pglite-template-<key>/, the key a hash of what makes them (src/db/,
 *   this file, the PGlite and Kysely versions): a run whose schema has not changed skips initdb
 *   and the migrations (about 5 s before the first test, most of a one-file run's wait).
 * - PostgreSQL (TEST_DATABASE_URL): that database is migrated once, and a migrated template
 *   database is made next to it (TEST_DATABASE_TEMPLATE) that `scratchDatabase` copies with
 *   CREATE DATABASE … TEMPLATE. It accepts no connections once made, so that nothing (a pooler's
 *   idle server connection included) can stop a copy.
 *
 * - src/ as JavaScript (TEST_PROCESS_BUILD), for the processes the tests start (process.ts).
 *
 * The variables set here reach the test workers, which start after it. The migrations keep their
 * own tests (tests/db/migrations.test.ts), on empty databases.
 */
export async function makeTemplates(): Promise<void> {
  process.env.TEST_PROCESS_BUILD = await compileSource();
  const pglite = await pgliteTemplate();
  process.env.TEST_PGLITE_TEMPLATE = join(pglite, 'pglite-template.tar');
  process.env.TEST_PGLITE_DATA_DIR = join(pglite, 'pglite-data-dir');

  const url = process.env.TEST_DATABASE_URL;
  if (!url) return;
  const main = await openDatabase({ url, poolMax: 1, preparedStatements: false });
  try {
    await migrateToLatest(main.db);
    const template = `${new URL(url).pathname.slice(1)}_template_${process.pid}`;
    await dropTemplate(main, template);
    await sql`create database ${sql.id(template)}`.execute(main.db);
    const copy = new URL(url);
    copy.pathname = `/${template}`;
    const migrated = await openDatabase({ url: copy.href, poolMax: 1, preparedStatements: false });
    try {
      await migrateToLatest(migrated.db);
    } finally {
      await migrated.close();
    }
    await sql`alter database ${sql.id(template)} allow_connections false`.execute(main.db);
    // A pooler keeps the server connection the migration used: end it, or no copy can be made.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${template}`.execute(main.db);
    process.env.TEST_DATABASE_TEMPLATE = template;
  } finally {
    await main.close();
  }
}

/**
 * The PGlite template's folder in .cache/, made if this key has none: written under a name of this
 * process's and renamed into place, so a run never sees half of one, and two runs that make it at
 * once both end with a whole one. Folders of other keys go once an hour old (a run still using one
 * is long done by then).
 */
async function pgliteTemplate(): Promise<string> {
  const cache = join(projectRoot(), '.cache');
  await mkdir(cache, { recursive: true });
  const name = `pglite-template-${await templateKey()}`;
  const dir = join(cache, name);
  for (const entry of await readdir(cache)) {
    if (!entry.startsWith('pglite-template-') || entry === name) continue;
    const pid = Number(/\.tmp-(\d+)$/.exec(entry)?.[1]);
    if (pid ? !isRunning(pid) : await olderThanAnHour(join(cache, entry)))
      await rm(join(cache, entry), { recursive: true, force: true });
  }
  if (existsSync(join(dir, 'pglite-data-dir'))) return dir;

  const building = `${dir}.tmp-${process.pid}`;
  await mkdir(building, { recursive: true });
  const embedded = await openDatabase({ pgliteDir: 'memory://' });
  let dump: Blob;
  try {
    await migrateToLatest(embedded.db);
    // initdb's template0 and template1 are two thirds of the files, which every test server loads
    // and PostgreSQL then reads at its start: without them a start takes about half the CPU
    // (0.45 s instead of 0.9). PGlite's one session never makes a database from them.
    await sql`update pg_database set datistemplate = false where datname in ('template0', 'template1')`.execute(
      embedded.db,
    );
    await sql`drop database template0`.execute(embedded.db);
    await sql`drop database template1`.execute(embedded.db);
    await sql`checkpoint`.execute(embedded.db);
    dump = await embedded.pglite!.dumpDataDir('none');
  } finally {
    await embedded.close();
  }
  await writeFile(join(building, 'pglite-template.tar'), Buffer.from(await dump.arrayBuffer()));
  // Last, as the mark that the folder is whole.
  await (await openDatabase({ pgliteDir: join(building, 'pglite-data-dir'), pgliteDump: dump })).close();
  try {
    await rename(building, dir);
  } catch {
    await rm(building, { recursive: true, force: true }); // another run made it first
  }
  return dir;
}

/** False for a path another run removed meanwhile: then there is nothing left to remove. */
async function olderThanAnHour(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs > 3_600_000;
}

/** What the template depends on: the database code and migrations, this file, PGlite and Kysely. */
async function templateKey(): Promise<string> {
  const root = projectRoot();
  const hash = createHash('sha256');
  const db = join(root, 'src', 'db');
  const files = (await readdir(db, { recursive: true })).filter((file) => file.endsWith('.ts')).sort();
  for (const file of [...files.map((file) => join('src', 'db', file)), join('tests', 'helpers', 'templates.ts')])
    hash.update(file).update(await readFile(join(root, file)));
  for (const name of ['@electric-sql/pglite', 'kysely'])
    hash.update(await readFile(join(root, 'node_modules', name, 'package.json')));
  return hash.digest('hex').slice(0, 16);
}

/**
 * src/ transpiled to JavaScript once per run, for the processes the tests start (src/main.ts,
 * src/worker.ts): the same swc transform jest runs the in-process tests through, written to
 * .cache/test-processes-<pid>/src/. Started through tsx instead, every process transpiled and
 * resolved its modules again: 1.4 s more CPU per start, and the suite starts some forty.
 * Inside the checkout so that node_modules, package.json ("type": "module") and the generated
 * contract are found from it as from src/.
 */
async function compileSource(): Promise<string> {
  const root = projectRoot();
  const cache = join(root, '.cache');
  await mkdir(cache, { recursive: true });
  // What an interrupted run left behind: its process is gone.
  for (const entry of await readdir(cache)) {
    const pid = Number(/^test-processes-(\d+)$/.exec(entry)?.[1]);
    if (pid && !isRunning(pid)) await rm(join(cache, entry), { recursive: true, force: true });
  }
  const out = join(cache, `test-processes-${process.pid}`);
  const files = (await readdir(join(root, 'src'), { recursive: true })).filter((file) => file.endsWith('.ts'));
  await Promise.all(
    files.map(async (file) => {
      const { code } = await transform(await readFile(join(root, 'src', file), 'utf8'), {
        filename: file,
        swcrc: false,
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'es6' },
      });
      const target = join(out, 'src', file.replace(/\.ts$/, '.js'));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, code);
    }),
  );
  return out;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function dropTemplate(admin: Awaited<ReturnType<typeof openDatabase>>, template: string): Promise<void> {
  await sql`drop database if exists ${sql.id(template)} with (force)`.execute(admin.db);
}

/** What jest's globalTeardown does: removes what `makeTemplates` made. */
export async function removeTemplates(): Promise<void> {
  if (process.env.TEST_PROCESS_BUILD) await rm(process.env.TEST_PROCESS_BUILD, { recursive: true, force: true });
  const url = process.env.TEST_DATABASE_URL;
  const template = process.env.TEST_DATABASE_TEMPLATE;
  if (!url || !template) return;
  const admin = await openDatabase({ url, poolMax: 1, preparedStatements: false });
  try {
    await dropTemplate(admin, template);
  } finally {
    await admin.close();
  }
}
