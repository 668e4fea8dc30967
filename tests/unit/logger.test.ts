import { describe, expect, it } from '@jest/globals';
import { captureLogs } from '../helpers/logs.js';

describe('createLogger', () => {
  it('redacts credentials at any depth of a logged object', () => {
    const { logger, lines, raw } = captureLogs('info');
    logger.info('login', { headers: { authorization: 'Bearer abc.def.ghi', cookie: 'sid=1' }, body: { email: 'a@b.c', password: 'hunter22' }, refresh_token: 'r1' });
    expect(lines[0]).toMatchObject({
      headers: { authorization: '[REDACTED]', cookie: '[REDACTED]' },
      body: { email: 'a@b.c', password: '[REDACTED]' },
      refresh_token: '[REDACTED]',
    });
    expect(raw.join('\n')).not.toMatch(/abc\.def\.ghi|hunter22|sid=1|r1"/);
  });
});
