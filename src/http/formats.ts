/**
 * RFC 3339 `date-time` (§5.6), as this API accepts it: `T` between date and time (RFC 3339's
 * ABNF; a space is refused), seconds 00–59 (no leap second: PostgreSQL cannot store one), an
 * offset of at most ±15:59 (PostgreSQL's limit; real ones stay within ±14:00), and an instant from
 * 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z once normalised to UTC, at millisecond
 * precision (further digits are dropped) — so whatever the API stores, it writes back as an
 * RFC 3339 date-time with a four-digit year, and accepts again.
 */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

const daysIn = (year: number, month: number) =>
  month === 2
    ? year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
      ? 29
      : 28
    : [4, 6, 9, 11].includes(month)
      ? 30
      : 31;

/** Midnight UTC of a day of the proleptic Gregorian calendar (setUTCFullYear: years 0–99 stay themselves). */
const midnight = (year: number, month: number, day: number) => new Date(0).setUTCFullYear(year, month - 1, day);
const FIRST = midnight(1, 1, 1);
const LAST = midnight(9999, 12, 31) + 86_400_000 - 1;

/** The instant a contract date-time names, at millisecond precision; undefined for one the API refuses. */
export function parseDateTime(value: string): Date | undefined {
  const match = DATE_TIME.exec(value);
  if (match === null) return undefined;
  const [, y, mo, d, h, mi, s, fraction = '', sign, oh = '0', om = '0'] = match;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59 || Number(oh) > 15 || Number(om) > 59) return undefined;
  const offsetMinutes = (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om));
  const ms =
    midnight(year, month, day) +
    ((hour * 60 + minute - offsetMinutes) * 60 + second) * 1000 +
    Number(`${fraction}00`.slice(0, 3));
  return ms >= FIRST && ms <= LAST ? new Date(ms) : undefined;
}

/**
 * The formats the validator checks with this API's rules instead of its own (express-openapi-validator
 * `formats`): every `format: date-time` of the contract, present and future, in a body, a query or
 * a header.
 */
export const contractFormats = {
  'date-time': { type: 'string' as const, validate: (value: string) => parseDateTime(value) !== undefined },
};
