/** One range-spec of a bytes range-set (RFC 9110 §14.1.1): `first-last`, `first-` or `-suffix`. */
const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * Whether `header`, which range-parser found nothing to send for (-1), is a valid bytes range-set
 * that no byte of a file of `size` bytes satisfies (RFC 9110 §14.1.2: every range starts at or
 * past the end, or is a suffix of zero bytes): the one case that is a 416. range-parser says -1
 * as well for a range-set that is invalid (a last byte before the first, `bytes=5-2`) and for a
 * suffix longer than the file, which RFC 9110 makes the whole file; such a Range is ignored, as
 * the other malformed forms are, and the whole file sent.
 */
export function unsatisfiable(header: string, size: number): boolean {
  if (!header.startsWith('bytes=')) return false;
  // A list (RFC 9110 §5.6.1): whitespace around the commas, empty elements allowed.
  const specs = header
    .slice('bytes='.length)
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length === 0) return false;
  return specs.every((spec) => {
    const [, first = '', last = ''] = RANGE_SPEC.exec(spec) ?? [];
    if (first === '') return last !== '' && BigInt(last) === 0n;
    if (last !== '' && BigInt(last) < BigInt(first)) return false;
    return BigInt(first) >= BigInt(size);
  });
}
