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

const context = winston.format((info) => {
  for (const key of Object.keys(info)) {
    info[key] = SECRET_KEYS.test(key) ? '[REDACTED]' : redact(info[key]);
  }
  return info;
});

/** With tracing on, the line of work done inside a span names it (`trace_id`, `span_id`), to go from a log line to its trace. */
const traceIds = winston.format((info) => Object.assign(info, currentIds()));

const pretty = winston.format.printf(({ level, message, timestamp, stack, ...rest }) => {
  const fields = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- `stack` is what the log call or the errors() format put there (a string); anything else is printed as String() prints it
  return `${String(timestamp)} ${level} ${String(message)}${fields}${stack ? `\n${String(stack)}` : ''}`;
});

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
    minLength: PIPE_BUF - 1024,
    maxWrite: PIPE_BUF,
    periodicFlush: 250,
  });
  process.on('exit', () => {
    try {
      destination.flushSync();
    } catch {
      // stdout is gone (EPIPE, EBADF): nothing left to write the lines to.
    }
  });
  stdout = destination;
  return destination;
}

/** winston's formatted line, handed to the buffered stdout; nothing waits for the write. */
class BufferedStdout extends Transport {
  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    stdoutDestination().write(`${String(info[Symbol.for('message')])}\n`);
    next();
  }
}

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
    format: winston.format.combine(
      ...(tracingOn() ? [traceIds()] : []),
      context(),
      winston.format.errors({ stack: true }),
      winston.format.timestamp(),
      options.format === 'json'
        ? winston.format.json()
        : colours
          ? winston.format.combine(winston.format.colorize(), pretty)
          : pretty,
    ),
    transports: [transport],
  });
}
