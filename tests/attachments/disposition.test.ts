import { describe, expect, it } from '@jest/globals';
import { dispositionFilename } from '../../src/attachments/disposition.js';
import { loadContract } from '../../src/http/contract.js';

const { schema } = (loadContract().spec.components as { parameters: Record<string, { schema: { pattern: string } }> })
  .parameters.ContentDisposition!;
const pattern = new RegExp(schema.pattern, 'u');

describe('the file name of a raw upload (Content-Disposition, RFC 6266)', () => {
  it.each([
    ['attachment', undefined],
    ['attachment; filename="report.pdf"', 'report.pdf'],
    ['inline;filename=notes.txt', 'notes.txt'],
    ['attachment ; filename = "a \\"quoted\\" name.txt" ; size=3', 'a "quoted" name.txt'],
    ["attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", 'résumé.pdf'],
    ["attachment; filename=resume.pdf; filename*=utf-8'en'r%C3%A9sum%C3%A9.pdf", 'résumé.pdf'],
    ["attachment; filename*=ISO-8859-1''caf%E9.txt", 'café.txt'],
    // A parameter given twice counts once, the first (the contract says so; RFC 6266 calls it invalid).
    ['attachment; filename=first.txt; filename=second.txt', 'first.txt'],
    // Bytes that are not UTF-8 become U+FFFD rather than a refusal.
    ["attachment; filename*=UTF-8''%FF.txt", '\ufffd.txt'],
  ])('%s: within the pattern, read as %s', (value, expected) => {
    expect(pattern.test(value)).toBe(true);
    expect(dispositionFilename(value)).toBe(expected);
  });

  it.each([
    '',
    'fgW!ET"',
    'attachment;',
    '; filename=x',
    'a b',
    'attachment; filename*="x"',
    "attachment; filename*=latin''x",
  ])('%j: outside the pattern, and not read either', (value) => {
    expect(pattern.test(value)).toBe(false);
    expect(dispositionFilename(value)).toBeNull();
  });
});
