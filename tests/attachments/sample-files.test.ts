import { describe, expect, it } from '@jest/globals';
import { decideType, sniff } from '../../src/attachments/content.js';
import { DEFAULT_ALLOWED_TYPES } from '../../src/config.js';
import { SAMPLE_TYPES, sampleFile } from '../helpers/sample-files.js';

/** What the bytes themselves are found to be: text formats are only ever found as text/plain. */
const foundAs = (type: string): string => (type === 'text/csv' || type === 'text/markdown' ? 'text/plain' : type);

const SEEDS = [0, 1, 2, 41, 12345];

describe('sample files', () => {
  it('cover every type the server accepts by default', () => {
    for (const type of DEFAULT_ALLOWED_TYPES) expect(sampleFile(type).length).toBeGreaterThan(0);
  });

  it.each(SAMPLE_TYPES)('%s: found as what it is, and accepted when declared as such', async (type) => {
    for (const seed of SEEDS) {
      const bytes = sampleFile(type, seed);
      expect(bytes.length).toBeLessThan(8 * 1024);
      const found = await sniff(bytes, true);
      expect(found).toBe(foundAs(type));
      expect(decideType(found, type, DEFAULT_ALLOWED_TYPES)).toBe(type);
      // Undeclared, the bytes decide alone: CSV and Markdown are then stored as text/plain.
      expect(decideType(found, undefined, DEFAULT_ALLOWED_TYPES)).toBe(foundAs(type));
    }
  });

  it.each(SAMPLE_TYPES)('%s: different seeds give different bytes, the same seed the same bytes', (type) => {
    const files = SEEDS.map((seed) => sampleFile(type, seed).toString('base64'));
    expect(new Set(files).size).toBe(SEEDS.length);
    expect(sampleFile(type, 41).equals(sampleFile(type, 41))).toBe(true);
    expect(sampleFile(type).equals(sampleFile(type, 0))).toBe(true);
  });

  it('has no sample of any other type', () => {
    for (const type of ['image/svg+xml', 'text/html', 'application/zip', 'IMAGE/PNG', 'toString', ''])
      expect(() => sampleFile(type)).toThrow(/no sample/);
  });
});
