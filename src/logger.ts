import { fsyncSync } from 'node:fs';
import { isatty } from 'node:tty';
// CommonJS: the default import is its constructor, typed as the module.
import sonicBoom, { type SonicBoom } from 'sonic-boom';
import winston from 'winston';
import Transport from 'winston-transport';
import type { Config } from './config.js';
import { currentIds, tracingOn } from './telemetry/tracing.js';

export type Logger = winston.Logger;

const SECRET_KEYS =
  /^(authorization|proxy-authorization|cookie|set-cookie|password|new_password|token|access_token|refresh_token|id_token|secret|jwt_secret|client_secret)$/i;

/** Replaces the value of every key that may hold a credential, at any depth. */
export function redact(value: unknown, seen = new WeakSet<object>()): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((item) => redact(item, seen));
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = SECRET_KEYS.test(key) ? '[REDACTED]' : redact(inner, seen);
  }
  return out;
}

type Format = winston.Logform.Format;
type TransformableInfo = winston.Logform.TransformableInfo;

const MESSAGE = Symbol.for('message');

/**
 * Redacts the fields of a line in place, as {@link redact} does a value: a field that may hold a
 * credential is replaced, an object by its redacted copy. A string, a number or a boolean is left
 * as it is, and costs no WeakSet (an access line has only those).
 */
function redactFields(info: TransformableInfo): TransformableInfo {
  for (const key of Object.keys(info)) {
    if (SECRET_KEYS.test(key)) info[key] = '[REDACTED]';
    else {
      const value = info[key];
      if (value !== null && typeof value === 'object') info[key] = redact(value);
    }
  }
  return info;
}

/**
 * What every line goes through before it is written, in this order: with tracing on, the ids of
 * the span current here (`trace_id`, `span_id`, to go from a log line to its trace); credentials
 * redacted; an Error logged, or logged as the message, turned into its message and stack (logform's
 * errors()); the time, unless the line has one (logform's timestamp()).
 */
function prepare(info: TransformableInfo, tracing: boolean, errors: Format): TransformableInfo {
  if (tracing) Object.assign(info, currentIds());
  const prepared = errors.transform(redactFields(info), errors.options) as TransformableInfo;
  if (!prepared.timestamp) prepared.timestamp = new Date().toISOString();
  return prepared;
}

/** JSON lines: {@link prepare}, then logform's json(). One format rather than a chain of five. */
function jsonLines(tracing: boolean): Format {
  const errors = winston.format.errors({ stack: true });
  const json = winston.format.json();
  return winston.format((info) => json.transform(prepare(info, tracing, errors), json.options))();
}

const pretty = winston.format.printf(({ level, message, timestamp, stack, ...rest }) => {
  const fields = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- `stack` is what the log call or the errors() format put there (a string); anything else is printed as String() prints it
  return `${String(timestamp)} ${level} ${String(message)}${fields}${stack ? `\n${String(stack)}` : ''}`;
});

/** Readable lines: {@link prepare}, colours (on a terminal), then {@link pretty}. */
function readableLines(tracing: boolean, colours: boolean): Format {
  const errors = winston.format.errors({ stack: true });
  const prepared = winston.format((info) => prepare(info, tracing, errors))();
  return colours
    ? winston.format.combine(prepared, winston.format.colorize(), pretty)
    : winston.format.combine(prepared, pretty);
}

// The largest write to a pipe that POSIX keeps in one piece: with WEB_CONCURRENCY every worker
// writes to the same stdout, and a longer write could be split by another process's lines.
const PIPE_BUF = 4096;

let stdout: SonicBoom | undefined;

/**
 * stdout, buffered and written asynchronously (a synchronous write per access line was ~12 % of
 * CPU). One per process, so the lines of every logger leave in the order they were logged.
 * - `minLength`: a write once 3 KiB (about 15 access lines) wait, `maxWrite`: at most PIPE_BUF
 *   at once, each chunk whole lines (a line longer than that goes alone, as it did before).
 * - `periodicFlush`: what a quiet server logs is out within a quarter of a second.
 * - no `maxLength`: past it sonic-boom drops lines (a 'drop' event). Unbounded, a stdout
 *   nobody reads costs memory, as process.stdout's own write queue did.
 * - EAGAIN (fd 1 is non-blocking once anything has touched process.stdout) is retried by
 *   sonic-boom every 100 ms, the chunk kept and in order.
 * On 'exit' (process.exit, the end of the event loop, an uncaught exception) what is still
 * buffered is written synchronously, as pino does; a chunk whose asynchronous write is then in
 * flight may land after it, or not at all if the thread pool had not started it: paths that can
 * wait call flushLogs() before exiting.
 */
function stdoutDestination(): SonicBoom {
  if (stdout) return stdout;
  const destination = new sonicBoom.SonicBoom({
    fd: 1,
    sync: false,
    contentMode: 'buffer',
    minLength: PIPE_BUF - 1024,
    maxWrite: PIPE_BUF,
    periodicFlush: 250,
  });
  process.on('exit', () => {
    try {
      destination.flushSync();
    } catch {
      // stdout is gone (EPIPE, EBADF): nothing left to write the lines to.
      return;
    }
    try {
      // As sonic-boom's flushSync does with strings (not with buffers): lines in a file are on disk.
      fsyncSync(1);
    } catch {
      // A pipe or a terminal (EINVAL): nothing to sync.
    }
  });
  stdout = destination;
  return destination;
}

/**
 * winston's formatted line, handed to the buffered stdout as bytes; nothing waits for the write.
 * Bytes, not a string: sonic-boom appends a string to the chunk it fills and measures that chunk
 * with Buffer.byteLength, which copies it whole, at every line; a Buffer it only counts.
 */
class BufferedStdout extends Transport {
  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    writeBytes(stdoutDestination(), Buffer.from(`${String(info[MESSAGE])}\n`));
    next();
  }
}

/** SonicBoom.write in `contentMode: 'buffer'`, which takes a Buffer (its types know only strings). */
const writeBytes = (destination: SonicBoom, bytes: Buffer): boolean => destination.write(bytes as unknown as string);

/**
 * Resolves once every line logged so far has been written to stdout (at once when nothing went
 * through the buffered stdout), or writing to it has failed: it is called on the way out, and
 * there is nowhere else to report that. Call it before `process.exit`, which drops the buffer.
 */
export function flushLogs(): Promise<void> {
  const destination = stdout;
  if (destination === undefined) return Promise.resolve();
  return new Promise((resolve) => destination.flush(() => resolve()));
}

/**
 * Logs an uncaught exception (an unhandled rejection included) at error. It is a monitor, so
 * Node still prints the stack to stderr and exits 1 as before; the 'exit' hook of the buffered
 * stdout then writes out this line and everything before it.
 */
export function logUncaught(logger: Logger): void {
  process.on('uncaughtExceptionMonitor', (error, origin) => {
    logger.error('uncaught exception', {
      origin,
      error: String(error),
      stack: error instanceof Error ? error.stack : undefined,
    });
  });
}

/**
 * Whether log lines carry ANSI colours: only pretty lines, only written to stdout, only when stdout
 * is a terminal (a pipe, a file or a log collector gets plain text) and never with NO_COLOR set.
 * `tty` is isatty(1) rather than process.stdout.isTTY: opening process.stdout makes a piped fd 1
 * non-blocking.
 */
export function colouredLines(options: {
  format: 'json' | 'pretty';
  noColor: boolean;
  stream: boolean;
  tty?: boolean;
}): boolean {
  return options.format === 'pretty' && !options.noColor && !options.stream && (options.tty ?? isatty(1));
}

/**
 * winston: JSON lines in production, readable lines elsewhere (coloured only on a terminal, and not with NO_COLOR);
 * credentials are redacted wherever they appear. Lines written for a request carry its
 * `request_id` (callers pass `req.id`). Without `stream` they go to the buffered stdout: call
 * flushLogs() before exiting.
 */
export function createLogger(options: Config['log'] & { silent?: boolean; stream?: NodeJS.WritableStream }): Logger {
  const transport = options.stream ? new winston.transports.Stream({ stream: options.stream }) : new BufferedStdout();
  const colours = colouredLines({
    format: options.format,
    noColor: options.noColor ?? false,
    stream: options.stream !== undefined,
  });
  return winston.createLogger({
    level: options.level,
    silent: options.silent ?? false,
    format: options.format === 'json' ? jsonLines(tracingOn()) : readableLines(tracingOn(), colours),
    transports: [transport],
  });
}
