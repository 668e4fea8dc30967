import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import winston from 'winston';
import { colouredLines } from '../../src/logger.js';
import { captureLogs } from '../helpers/logs.js';

// eslint-disable-next-line no-control-regex -- ANSI colour codes begin with ESC
const ANSI = /\u001b\[[0-9;]*m/;
const MESSAGE = Symbol.for('message');
/** The line logform's json() writes for `info` (safe-stable-stringify: keys sorted), as the logger wrote lines before. */
function referenceLine(info: Record<string, unknown>): string {
  const json = winston.format.json();
  return (json.transform({ level: 'info', message: '', ...info }, json.options) as Record<symbol, string>)[MESSAGE]!;
}
/** A process that logs one pretty line through the real logger to fd 1, with `env`. */
const LOG_ONE =
  "import { createLogger, flushLogs } from './src/logger.ts'; import { loadConfig } from './src/config.ts'; createLogger(loadConfig().log).info('hello', { n: 1 }); await flushLogs();";
function logOne(env: Record<string, string>, { tty }: { tty: boolean }): string {
  const node = [process.execPath, '--import', 'tsx', '--input-type=module', '-e', LOG_ONE];
  // util-linux `script` runs the command on a pseudo-terminal: stdout is a TTY as in a shell.
  const [command, args] = tty
    ? ['script', ['-qec', node.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' '), '/dev/null']]
    : [node[0]!, node.slice(1)];
  const run = spawnSync(command, args, {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      NODE_ENV: 'development',
      LOG_FORMAT: 'pretty',
      NO_COLOR: '',
      FORCE_COLOR: '',
      ...env,
    },
    encoding: 'utf8',
  });
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('hello');
  return run.stdout;
}

describe('createLogger', () => {
  it('redacts credentials at any depth of a logged object', () => {
    const { logger, lines, raw } = captureLogs('info');
    logger.info('login', {
      headers: { authorization: 'Bearer abc.def.ghi', cookie: 'sid=1' },
      body: { email: 'a@b.c', password: 'hunter22' },
      refresh_token: 'r1',
    });
    expect(lines[0]).toMatchObject({
      headers: { authorization: '[REDACTED]', cookie: '[REDACTED]' },
      body: { email: 'a@b.c', password: '[REDACTED]' },
      refresh_token: '[REDACTED]',
    });
    expect(raw.join('\n')).not.toMatch(/abc\.def\.ghi|hunter22|sid=1|r1"/);
  });

  it('writes a line with objects, arrays, errors or bigints as logform json() did', () => {
    const { logger, raw } = captureLogs('info');
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    logger.error('failed', {
      error: new Error('boom'),
      nested: { b: [1, 'two', { c: 3n }], a: true },
      big: 12n,
      circular,
    });
    logger.error(new Error('thrown'));
    const [first, second] = raw.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(raw[0]).toBe(
      referenceLine({
        error: {},
        nested: { b: [1, 'two', { c: 3n }], a: true },
        big: 12n,
        circular: { name: 'loop', self: '[Circular]' },
        level: 'error',
        message: 'failed',
        timestamp: first!.timestamp,
      }),
    );
    expect(raw[0]).toContain('"nested":{"a":true,"b":[1,"two",{"c":"3"}]}');
    expect(second).toMatchObject({
      level: 'error',
      message: 'thrown',
      stack: expect.stringMatching(/^Error: thrown\n/),
    });
  });

  it('colours pretty lines only on a terminal, never with NO_COLOR, never JSON or a given stream', () => {
    expect(colouredLines({ format: 'pretty', noColor: false, stream: false, tty: true })).toBe(true);
    expect(colouredLines({ format: 'pretty', noColor: false, stream: false, tty: false })).toBe(false);
    expect(colouredLines({ format: 'pretty', noColor: true, stream: false, tty: true })).toBe(false);
    expect(colouredLines({ format: 'json', noColor: false, stream: false, tty: true })).toBe(false);
    expect(colouredLines({ format: 'pretty', noColor: false, stream: true, tty: true })).toBe(false);
  });

  it('writes plain lines to a pipe, coloured ones to a terminal unless NO_COLOR is set (real processes)', () => {
    expect(logOne({}, { tty: false })).not.toMatch(ANSI);
    if (!existsSync('/usr/bin/script')) return; // util-linux's script gives the pseudo-terminal
    expect(logOne({}, { tty: true })).toMatch(ANSI);
    expect(logOne({ NO_COLOR: '1' }, { tty: true })).not.toMatch(ANSI);
  }, 20_000);
});
