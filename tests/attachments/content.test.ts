import { describe, expect, it } from '@jest/globals';
import { decideType, essence, sniff } from '../../src/attachments/content.js';
import { MAX_FILENAME, safeFilename } from '../../src/attachments/filename.js';
import { DEFAULT_ALLOWED_TYPES } from '../../src/config.js';
import { elf, html, pdf, png, svg } from '../helpers/files.js';

describe('safeFilename', () => {
  it.each([
    ['report.pdf', 'report.pdf'],
    ['../../etc/passwd', 'passwd'],
    ['C:\\Users\\ada\\cv.docx', 'cv.docx'],
    ['inv\u0000oice\u0007.pdf', 'invoice.pdf'],
    ['\u202Egpj.exe', 'gpj.exe'],
    ['e\u0301te\u0301.txt', 'été.txt'],
    ['  ..hidden.  ', 'hidden'],
    ['lone \ud800 surrogate.txt', 'lone  surrogate.txt'],
    ['', 'attachment'],
    [undefined, 'attachment'],
    ['/', 'attachment'],
  ])('%j → %j', (raw, safe) => {
    expect(safeFilename(raw)).toBe(safe);
  });

  it(`cuts a long name to ${MAX_FILENAME} characters, keeping its extension and whole code points`, () => {
    const name = safeFilename(`${'😀'.repeat(400)}.pdf`);
    expect([...name]).toHaveLength(MAX_FILENAME);
    expect(name.endsWith('😀.pdf')).toBe(true);
  });
});

describe('type sniffing', () => {
  it.each([
    ['PNG', png(), 'image/png'],
    ['PDF', pdf(), 'application/pdf'],
    ['ELF', elf(), 'application/x-elf'],
    ['SVG', svg(), 'image/svg+xml'],
    ['HTML', html(), 'text/html'],
    ['HTML after whitespace, upper case', Buffer.from('\n  <SCRIPT>alert(1)</SCRIPT>'), 'text/html'],
    ['XML', Buffer.from('<?xml version="1.0"?><a/>'), 'application/xml'],
    ['UTF-8 text', Buffer.from('Grüße, 世界 ✓\n'), 'text/plain'],
    ['text with a NUL', Buffer.from('abc\u0000def'), 'application/octet-stream'],
    ['invalid UTF-8', Buffer.from([0x61, 0xff, 0x62]), 'application/octet-stream'],
  ])('%s is %s', async (_name, bytes, type) => {
    expect(await sniff(bytes, true)).toBe(type);
  });

  it('does not call text binary for a character cut by the end of the sample', async () => {
    const text = Buffer.from('é'.repeat(10));
    expect(await sniff(text.subarray(0, 7), false)).toBe('text/plain');
  });

  it('lets the bytes decide, keeps a declared kind of text, and refuses a disagreement or a type not allowed', () => {
    expect(decideType('image/png', undefined, DEFAULT_ALLOWED_TYPES)).toBe('image/png');
    expect(decideType('image/png', 'application/octet-stream', DEFAULT_ALLOWED_TYPES)).toBe('image/png');
    expect(decideType('image/jpeg', 'image/jpg', DEFAULT_ALLOWED_TYPES)).toBe('image/jpeg');
    expect(decideType('text/plain', 'text/csv; charset=utf-8', DEFAULT_ALLOWED_TYPES)).toBe('text/csv');
    expect(() => decideType('image/png', 'application/pdf', DEFAULT_ALLOWED_TYPES)).toThrow(
      expect.objectContaining({ code: 'FILE_TYPE_MISMATCH' }),
    );
    expect(() => decideType('text/html', 'text/plain', DEFAULT_ALLOWED_TYPES)).toThrow(
      expect.objectContaining({ code: 'FILE_TYPE_MISMATCH' }),
    );
    expect(() => decideType('image/svg+xml', undefined, DEFAULT_ALLOWED_TYPES)).toThrow(
      expect.objectContaining({ code: 'FILE_TYPE_REFUSED' }),
    );
    expect(decideType('image/svg+xml', undefined, [...DEFAULT_ALLOWED_TYPES, 'image/svg+xml'])).toBe('image/svg+xml');
    expect(essence(' Image/PNG ; q=1')).toBe('image/png');
  });
});
