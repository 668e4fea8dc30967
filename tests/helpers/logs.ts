import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger.js';

/** A real JSON winston logger whose every line the test can read back, raw or parsed. */
export function captureLogs(level: 'info' | 'debug' = 'debug'): {
  logger: Logger;
  lines: Record<string, unknown>[];
  raw: string[];
} {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger({ level, format: 'json', stream }), lines, raw };
}
