import type { ByteRange } from './blob-store.js';

/** One range-spec of a bytes range-set (RFC 9110 §14.1.1): `first-last`, `first-` or `-suffix`. */
const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * What a download sends for a `Range` header:
 * - `'whole'`: the whole file with 200, the header ignored (RFC 9110 §14.2 lets a server ignore
 *   it): another unit than `bytes`, a malformed or invalid range-set (any `first-last` with `last`
 *   before `first`, such as `bytes=5-2`), or ranges that stay several once merged;
 * - a {@link ByteRange}: that one part, with 206;
 * - `'unsatisfiable'`: a valid bytes range-set of which no range holds a byte of the file: 416.
 *
 * Ranges that start at or past the end (and `-0`) are left out (§14.1.2: a range-set is
 * satisfiable if any of its ranges is); a last position past the end stops at the end, and a
 * suffix longer than the file is the whole file. The rest are merged where they overlap or touch,
 * in whatever order they came (§14.2 allows coalescing): `bytes=0-0,1-1,2-2`, `bytes=0-2,1-3` and
 * `bytes=2-3,0-1` each come to one range. One range is sent as that part; several are sent as the
 * whole file (200), never as `multipart/byteranges`, which §14.2 also allows. `size` is more than 0:
 * an empty file has no range to send, and is sent whole.
 */
export function chooseRange(header: string, size: number): ByteRange | 'whole' | 'unsatisfiable' {
  const equals = header.indexOf('=');
  // Range units are case-insensitive (RFC 9110 §14.1).
  if (equals === -1 || header.slice(0, equals).trim().toLowerCase() !== 'bytes') return 'whole';
  // A list (RFC 9110 §5.6.1): whitespace around the commas, empty elements allowed.
  const specs = header
    .slice(equals + 1)
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length === 0) return 'whole';
  const end = BigInt(size);
  const wanted: { start: bigint; end: bigint }[] = [];
  for (const spec of specs) {
    const match = RANGE_SPEC.exec(spec);
    if (match === null) return 'whole';
    const [, first = '', last = ''] = match;
    if (first === '') {
      if (last === '') return 'whole'; // `-` alone
      const suffix = BigInt(last);
      if (suffix > 0n) wanted.push({ start: suffix >= end ? 0n : end - suffix, end: end - 1n });
      continue;
    }
    const from = BigInt(first);
    const to = last === '' ? undefined : BigInt(last);
    if (to !== undefined && to < from) return 'whole'; // invalid (§14.1.1), and so the whole range-set
    if (from < end) wanted.push({ start: from, end: to !== undefined && to < end ? to : end - 1n });
  }
  if (wanted.length === 0) return 'unsatisfiable';
  wanted.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const merged = [wanted[0]!];
  for (const range of wanted.slice(1)) {
    const current = merged.at(-1)!;
    if (range.start > current.end + 1n) merged.push(range);
    else if (range.end > current.end) current.end = range.end;
  }
  if (merged.length > 1) return 'whole';
  return { start: Number(merged[0]!.start), end: Number(merged[0]!.end) };
}
