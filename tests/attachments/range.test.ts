import { describe, expect, it } from '@jest/globals';
import { chooseRange } from '../../src/attachments/range.js';

describe('chooseRange (what a download sends for a Range header)', () => {
  it.each([
    ['bytes=0-0', 5, { start: 0, end: 0 }],
    ['bytes=1-', 5, { start: 1, end: 4 }],
    ['bytes=-2', 5, { start: 3, end: 4 }],
    ['bytes=3-99', 5, { start: 3, end: 4 }],
    ['bytes=-99', 5, { start: 0, end: 4 }],
    // Several ranges that overlap or touch, in any order, are one.
    ['bytes=0-0,1-1,2-2', 5, { start: 0, end: 2 }],
    ['bytes=0-2,1-3', 5, { start: 0, end: 3 }],
    ['bytes=2-3,0-1', 5, { start: 0, end: 3 }],
    ['bytes=-1,0-3', 5, { start: 0, end: 4 }],
    ['bytes=1-1,1-1', 5, { start: 1, end: 1 }],
    // Ranges past the end are left out; list syntax (RFC 9110 §5.6.1) and the unit's case are lenient.
    ['bytes=0-1, 5-, -0', 5, { start: 0, end: 1 }],
    ['bytes= 0-1 ,, ', 5, { start: 0, end: 1 }],
    ['Bytes=0-1', 5, { start: 0, end: 1 }],
    [`bytes=0-${2 ** 60}`, 5, { start: 0, end: 4 }],
  ])('%s of %i bytes is the part %j (206)', (header, size, part) => {
    expect(chooseRange(header, size)).toEqual(part);
  });

  it.each([
    // Ranges that stay apart after merging.
    ['bytes=0-0,2-2', 5],
    ['bytes=3-4,0-1', 5],
    ['bytes=-1,0-0', 5],
    // Malformed, invalid (even in part), or not bytes.
    ['bytes=5-2', 5],
    ['bytes=0-1,3-2', 5],
    ['bytes=99999999999999999999999-99999999999999999999998', 5],
    ['bytes=0-1,x', 5],
    ['bytes=-', 5],
    ['bytes=', 5],
    ['bytes=1--2', 5],
    ['bytes=0x1-2', 5],
    ['bytes 0-1', 5],
    ['lines=0-1', 5],
  ])('%s of %i bytes is the whole file (200)', (header, size) => {
    expect(chooseRange(header, size)).toBe('whole');
  });

  it.each([
    ['bytes=5-', 5],
    ['bytes=-0', 5],
    ['bytes=5-9, 7-', 5],
    ['bytes=99999999999999999999999-', 5],
  ])('%s of %i bytes has no byte to send (416)', (header, size) => {
    expect(chooseRange(header, size)).toBe('unsatisfiable');
  });
});
