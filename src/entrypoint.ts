import cluster from 'node:cluster';
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import { SigningKeyLocked } from './auth/builtin/signing-keys.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { DataDirectoryInUse } from './db/data-dir-lock.js';
import { MigrationNotPermitted } from './db/migrate.js';
import { ListenFailed } from './http/http-server.js';
import { flushLogs, type Logger } from './logger.js';
import { tracingOn } from './telemetry/tracing.js';

/** What `npm start` and `npm run worker` share before and after their work. */

/** The database the configuration names, for the failure lines below (never printed whole: it may hold a password). */
let database: Pick<Config['database'], 'url' | 'pgliteDir'> | undefined;

/**
 * The configuration, or what is wrong with it and exit 1: one line for one problem
 * (`Invalid configuration: …`), one line per problem under that heading for several.
 */
export function configOrExit(): Config {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(
      error.problems.length === 1 ? `Invalid configuration: ${error.problems[0]}\n` : `${error.message}\n`,
    );
    process.exit(1);
  }
  database = config.database;
  return config;
}

/**
 * Says at start whether this process traces: on (where to, and whether it continues clients'
 * traces), or configured but not loaded because the process was started without the preload.
 */
export function reportTracing(config: Config, logger: Logger): void {
  if (!config.tracing.enabled) return;
  if (tracingOn()) logger.info('tracing on', { incoming_context: config.tracing.incoming });
  else
    logger.warn(
      'an OTLP endpoint is set but tracing is not loaded: start the process with node --import ./dist/src/telemetry/preload.js (npm start and npm run worker do)',
    );
}

/**
 * Ends a process whose start failed: a known refusal (see {@link startupRefusal}) says what to do
 * in one line; anything else is a bug and gets its stack. A worker of the WEB_CONCURRENCY cluster
 * hands its line to the primary instead, which prints the first one alone and stops.
 */
export async function exitOnFailure(error: unknown): Promise<never> {
  const refusal = startupRefusal(error);
  // A bug: its stack, with what it wraps (`cause`) and the fields a driver adds (a SQLSTATE, a detail).
  const text = refusal ?? `fatal: ${error instanceof Error ? inspect(error, { depth: 4 }) : String(error)}`;
  await flushLogs(); // the lines logged before it, e.g. 'database ready'
  if (cluster.isWorker && process.send !== undefined) {
    await new Promise<void>((sent) => process.send!({ startupFailure: text }, undefined, {}, () => sent()));
  } else {
    process.stderr.write(`${text}\n`);
  }
  process.exit(1);
}

/**
 * The one line for a start-up failure with a known cause and remedy, saying what to do; undefined
 * for anything else (a bug: its stack is what helps). The causes: the embedded database's
 * directory, the port, PostgreSQL refusing or not answering, the schema being newer than this
 * code or the role not allowed to create it, and the built-in issuer's signing keys not opening with
 * KEY_ENCRYPTION_SECRET.
 */
export function startupRefusal(error: unknown): string | undefined {
  for (const e of causes(error)) {
    if (e instanceof DataDirectoryInUse || e instanceof ListenFailed) return e.message;
    const line = postgresRefusal(e) ?? explainedRefusal(e) ?? migrationRefusal(e) ?? localRefusal(e);
    if (line !== undefined) return line;
  }
  return undefined;
}

/** A field a driver or the system put on an error (`code`, `syscall`, `path`…), if it is a string or a number. */
function field(error: Error, name: string): string | undefined {
  const value = (error as unknown as Record<string, unknown>)[name];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

/** `error`, then what it wraps: its `cause` chain and the attempts of an AggregateError (one per address). */
function causes(error: unknown): Error[] {
  const found: Error[] = [];
  const queue: unknown[] = [error];
  while (queue.length > 0 && found.length < 20) {
    const next = queue.shift();
    if (!(next instanceof Error)) continue;
    found.push(next);
    if (next instanceof AggregateError) queue.push(...(next.errors as unknown[]));
    if (next.cause !== undefined) queue.push(next.cause);
  }
  return found;
}

/** DATABASE_URL's server, user and database as a message may name them (never the password). */
function postgresTarget(): { where: string; host: string; port: string; user?: string; name?: string } {
  let url: URL | undefined;
  try {
    url = database?.url === undefined ? undefined : new URL(database.url);
  } catch {
    url = undefined;
  }
  const host = url?.searchParams.get('host') ?? (url?.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost');
  const port = url?.searchParams.get('port') ?? (url?.port || '5432');
  const decode = (part: string | undefined) => (part ? decodeURIComponent(part) : undefined);
  return {
    where: host.startsWith('/')
      ? `${host} (port ${port})`
      : host.includes(':')
        ? `[${host}]:${port}`
        : `${host}:${port}`,
    host,
    port,
    user: decode(url?.username),
    name: decode(url?.pathname.slice(1)),
  };
}

/** A word as a shell argument: as it is when plain, else single-quoted. */
const shellWord = (word: string) => (/^[\w./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`);

const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** PostgreSQL refusing the connection or a start-up step, or not being there (pg's errors and the socket's). */
function postgresRefusal(error: Error): string | undefined {
  if (database?.url === undefined) return undefined;
  const code = field(error, 'code');
  const target = postgresTarget();
  const at = `PostgreSQL at ${target.where}`;
  switch (code) {
    case '3D000': {
      const name = /database "(.*)" does not exist/.exec(error.message)?.[1] ?? target.name ?? '?';
      const createdb = ['createdb', '-h', target.host, '-p', target.port]
        .concat(target.user ? ['-U', target.user] : [])
        .concat(name)
        .map(shellWord)
        .join(' ');
      return `Database "${name}" does not exist on ${at}: create it (\`${createdb}\`, or CREATE DATABASE "${name.replaceAll('"', '""')}"; in psql), or fix the database name in DATABASE_URL.`;
    }
    case '28P01':
      return `${at} refused the login: ${error.message}. Fix the user name and password in DATABASE_URL (percent-encode any @ : / ? # in them).`;
    case '28000': {
      const role = /role "(.*)" does not exist/.exec(error.message)?.[1];
      return role === undefined
        ? `${at} refused the login: ${error.message}. Fix the user in DATABASE_URL, or let this client in through the server's pg_hba.conf.`
        : `${at} refused the login: role "${role}" does not exist. Fix the user in DATABASE_URL, or create the role (\`${['createuser', '-h', target.host, '-p', target.port, role].map(shellWord).join(' ')}\`).`;
    }
    case '53300':
      return `${at} refused the connection: ${error.message}. Raise its max_connections, lower DATABASE_POOL_MAX, or put a pooler in front of it.`;
    case '57P03':
      return `${at} is not accepting connections yet (${error.message}). Start again once it is.`;
    case '42501':
      return `${at} refused a start-up step for lack of privileges: ${error.message}. The migrations and the webhook queue create tables and a schema: use the database's owner in DATABASE_URL, or grant its user CREATE on the database and on schema public.`;
    case 'ECONNREFUSED':
    case 'ENOENT':
      if (field(error, 'syscall') !== 'connect') return undefined;
      return `Cannot connect to ${at}: connection refused (no server listens there). Start PostgreSQL, or fix the host and port in DATABASE_URL.`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `Cannot connect to ${at}: the host name "${field(error, 'hostname') ?? target.host}" does not resolve (${code}). Fix the host in DATABASE_URL.`;
    case 'ECONNRESET':
      // A server that closes at once resets the connection when the start-up message reaches it
      // after the close (else the client reads an end: "Connection terminated unexpectedly").
      return `${at} closed the connection before answering: is that port a PostgreSQL server's? Check the host and port in DATABASE_URL.`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `Cannot connect to ${at}: ${code === 'ETIMEDOUT' ? 'no answer' : 'no route to it'} (${code}). Check the host and port in DATABASE_URL, and that no firewall is in the way.`;
  }
  if (code !== undefined && TLS_CODES.has(code))
    return `Cannot connect to ${at} over TLS: ${error.message} (${code}). Give the server's CA certificate as sslrootcert=/path/to/ca.pem in DATABASE_URL, or use the host name its certificate names.`;
  switch (error.message) {
    case 'Connection terminated due to connection timeout':
      return `Cannot connect to ${at}: no answer (connection timed out). Check the host and port in DATABASE_URL, and that no firewall is in the way.`;
    case 'Connection terminated unexpectedly':
      return `${at} closed the connection before answering: is that port a PostgreSQL server's? Check the host and port in DATABASE_URL.`;
    case 'The server does not support SSL connections':
      return `${at} does not accept SSL connections, but DATABASE_URL asks for them (ssl or sslmode in its query). Remove that, or enable SSL on the server.`;
  }
  return undefined;
}

/**
 * Refusals whose error already says what to do: the built-in issuer's signing keys not opening
 * with KEY_ENCRYPTION_SECRET (auth/builtin/signing-keys.ts), a role that may not create the
 * tables the migrations need (db/migrate.ts).
 */
function explainedRefusal(error: Error): string | undefined {
  return error instanceof SigningKeyLocked || error instanceof MigrationNotPermitted ? error.message : undefined;
}

/** The schema holds a migration this code does not know: it was migrated by a newer tasks-api (Kysely's Migrator). */
function migrationRefusal(error: Error): string | undefined {
  const missing = /^corrupted migrations: previously executed migration (\S+) is missing/.exec(error.message);
  if (!missing) return undefined;
  return `The database was migrated by a newer tasks-api: migration ${missing[1]} is not in this one. Run that version or a later one, or restore a backup from before it.`;
}

/** This machine refusing: a directory the process may not write, a HOST that is not one of its addresses, an embedded database that does not open. */
function localRefusal(error: Error): string | undefined {
  const code = field(error, 'code');
  if (code === 'EADDRNOTAVAIL' && field(error, 'syscall') === 'listen') {
    const port = field(error, 'port');
    return `Cannot listen on ${field(error, 'address') ?? 'HOST'}${port === undefined || port === '0' ? '' : `:${port}`}: that address is not one of this machine's. Set HOST to one of its addresses (0.0.0.0 for all of them, 127.0.0.1 for this machine alone).`;
  }
  const why: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
    ENOTDIR: 'a part of the path is a file, not a directory',
  };
  const path = field(error, 'path');
  if (code !== undefined && why[code] !== undefined && path !== undefined) {
    const embedded =
      database?.url === undefined &&
      database?.pgliteDir !== undefined &&
      !database.pgliteDir.startsWith('memory://') &&
      resolve(path).startsWith(resolve(database.pgliteDir));
    const remedy =
      code === 'ENOSPC'
        ? 'Free space on that device'
        : code === 'ENOTDIR'
          ? 'Use a path whose parts are directories'
          : 'Give this user write access there';
    return `Cannot ${field(error, 'syscall') ?? 'write'} ${path}: ${why[code]} (${code}). ${remedy}${embedded ? ', or set PGLITE_DIR to a directory it can write' : ''}.`;
  }
  if (database?.url === undefined && error.message === 'PGlite failed to initialize properly')
    return `The embedded database in ${database?.pgliteDir ?? 'PGLITE_DIR'} did not open (PGlite failed to initialize properly): the directory holds something other than this PGlite version's data, or is damaged. Restore it from a backup, or set PGLITE_DIR to another directory (an empty one starts a new database).`;
  return undefined;
}
