import { describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { watchPartHeaders } from '../../src/attachments/part-headers.js';

const CONTENT_TYPE = 'multipart/form-data; boundary=----formdata-XyZ';
const delimiter = '------formdata-XyZ';

const body = (...parts: string[]) =>
  Buffer.from(`${parts.map((part) => `${delimiter}\r\n${part}\r\n`).join('')}${delimiter}--\r\n`);
const field = (name: string, value: string) => `Content-Disposition: form-data; name="${name}"\r\n\r\n${value}`;
const file = (headers: string, bytes = 'GIF89a\r\n-----not a delimiter\r\n') =>
  `Content-Disposition: form-data; name="file"; filename="a.gif"${headers}\r\n\r\n${bytes}`;

/** The watcher's answers for `name` after `bytes` arrive in pieces of `size` bytes (every size from 1 up, so every split is tried). */
async function typedIn(bytes: Buffer, name = 'file', contentType = CONTENT_TYPE) {
  return answerIn(bytes, name, contentType, 'typed');
}

async function answerIn(bytes: Buffer, name: string, contentType: string, question: 'typed' | 'named') {
  const answers = new Set<boolean | undefined>();
  for (const size of [1, 2, 3, 5, 7, 11, 13, 64, bytes.length]) {
    const req = new PassThrough();
    const watch = watchPartHeaders(req, contentType, 3);
    req.resume();
    for (let at = 0; at < bytes.length; at += size) req.write(bytes.subarray(at, at + size));
    req.end();
    await once(req, 'end');
    answers.add(watch[question](name));
  }
  expect(answers.size).toBe(1);
  return [...answers][0];
}

describe('watchPartHeaders', () => {
  it('tells a file part without a Content-Type from one with one, however the body is cut', async () => {
    expect(await typedIn(body(file('')))).toBe(false);
    expect(await typedIn(body(file('\r\nContent-Type: image/gif')))).toBe(true);
    expect(await typedIn(body(field('filename', 'x.gif'), file('')))).toBe(false);
    expect(await typedIn(body(field('filename', 'x.gif'), file('\r\ncontent-TYPE: text/plain')))).toBe(true);
    expect(await typedIn(body(file(''), field('filename', 'x.gif')))).toBe(false);
  });

  it('tells a file part with a file name from one without, as busboy does (an empty one is none)', async () => {
    const named = (bytes: Buffer) => answerIn(bytes, 'file', CONTENT_TYPE, 'named');
    expect(await named(body(file('\r\nContent-Type: image/gif')))).toBe(true);
    expect(await named(body(field('filename', 'x.gif'), file('')))).toBe(true);
    expect(
      await named(body(`Content-Disposition: form-data; name="file"; filename*=UTF-8''%C3%A9.gif\r\n\r\nGIF89a`)),
    ).toBe(true);
    expect(
      await named(body('Content-Disposition: form-data; name="file"\r\nContent-Type: image/gif\r\n\r\nGIF89a')),
    ).toBe(false);
    expect(await named(body(field('filename', 'x.gif'), field('file', 'GIF89a')))).toBe(false);
    expect(await named(body('Content-Disposition: form-data; name="file"; filename=""\r\n\r\nGIF89a'))).toBe(false);
    expect(await named(body(field('filename', 'x.gif')))).toBeUndefined();
  });

  it('reads parts as busboy does: a preamble, a quoted boundary, folded header lines', async () => {
    expect(await typedIn(Buffer.concat([Buffer.from('preamble, ignored\r\n'), body(file(''))]))).toBe(false);
    expect(await typedIn(body(file('')), 'file', 'multipart/form-data; boundary="----formdata-XyZ"')).toBe(false);
    expect(
      await typedIn(
        body(
          'Content-Disposition: form-data;\r\n name="file"; filename="a.gif"\r\nContent-Type: image/gif\r\n\r\nGIF89a',
        ),
      ),
    ).toBe(true);
  });

  it('stops at the file part, so its bytes are never searched', async () => {
    const req = new PassThrough();
    watchPartHeaders(req, CONTENT_TYPE, 3);
    req.write(body(field('filename', 'x.gif'), file('')).subarray(0, 200));
    await new Promise((resolve) => setImmediate(resolve));
    expect(req.listenerCount('data')).toBe(0);
  });

  it('knows nothing of a part it did not see: no boundary, a header block longer than busboy reads, another name', async () => {
    expect(await typedIn(body(file('')), 'file', 'multipart/form-data')).toBeUndefined();
    expect(await typedIn(body(file(`\r\nX-Padding: ${'x'.repeat(17 * 1024)}`)))).toBeUndefined();
    expect(await typedIn(body(field('filename', 'x.gif')))).toBeUndefined();
  });
});
