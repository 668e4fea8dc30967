import { Writable } from 'node:stream';
import { describe, expect, it } from '@jest/globals';
import { createLogger } from '../../src/logger.js';

describe('createLogger', () => {
  it('redacts credentials at any depth of a logged object', () => {
    let out = '';
    const stream = new Writable({
      write(chunk: Buffer, _e, done) {
        out += chunk.toString();
        done();
      },
    });
    const logger = createLogger({ level: 'info', format: 'json', stream });
    logger.info('login', { headers: { authorization: 'Bearer abc.def.ghi', cookie: 'sid=1' }, body: { email: 'a@b.c', password: 'hunter22' }, refresh_token: 'r1' });
    const line = JSON.parse(out) as Record<string, unknown>;
    expect(line).toMatchObject({
      headers: { authorization: '[REDACTED]', cookie: '[REDACTED]' },
      body: { email: 'a@b.c', password: '[REDACTED]' },
      refresh_token: '[REDACTED]',
    });
    expect(out).not.toMatch(/abc\.def\.ghi|hunter22|sid=1|r1"/);
  });
});
