import winston from 'winston';
import type { Config } from './config.js';

export type Logger = winston.Logger;

const SECRET_KEYS = /^(authorization|proxy-authorization|cookie|set-cookie|password|new_password|token|access_token|refresh_token|id_token|secret|jwt_secret|client_secret)$/i;

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

const pretty = winston.format.printf(({ level, message, timestamp, stack, ...rest }) => {
  const fields = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${String(timestamp)} ${level} ${String(message)}${fields}${stack ? `\n${String(stack)}` : ''}`;
});

/**
 * winston: JSON lines in production, readable lines elsewhere; credentials are redacted wherever
 * they appear. Lines written for a request carry its `request_id` (callers pass `req.id`).
 */
export function createLogger(
  options: Config['log'] & { silent?: boolean; stream?: NodeJS.WritableStream },
): Logger {
  const transport = options.stream
    ? new winston.transports.Stream({ stream: options.stream })
    : new winston.transports.Console();
  return winston.createLogger({
    level: options.level,
    silent: options.silent ?? false,
    format: winston.format.combine(
      context(),
      winston.format.errors({ stack: true }),
      winston.format.timestamp(),
      options.format === 'json' ? winston.format.json() : winston.format.combine(winston.format.colorize(), pretty),
    ),
    transports: [transport],
  });
}
