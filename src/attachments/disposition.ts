/*
 * The file name a raw upload's `Content-Disposition` carries (RFC 6266), read by the grammar the
 * contract's pattern states (ContentDisposition.yaml), so that every value the contract admits is
 * read and none is refused here: a disposition type, then `; name=value` parameters (a token or a
 * quoted string, or an RFC 8187 extended value in UTF-8 or ISO-8859-1 for `name*`). A parameter
 * given twice counts once, the first (the `content-disposition` package throws on it instead).
 */

const TOKEN = "[!#$%&'*+.0-9A-Z^_`a-z|~-]+";
const TYPE = new RegExp(`^${TOKEN}[\\t ]*`, 'y');
const PARAMETER = new RegExp(
  `;[\\t ]*(${TOKEN})[\\t ]*=[\\t ]*("(?:[\\x20!\\x23-\\x5b\\x5d-\\x7e]|\\\\[\\x20-\\x7e])*"|${TOKEN})[\\t ]*`,
  'y',
);
const EXTENDED = /^([A-Za-z0-9!#$%&+^_`{}~-]+)'[A-Za-z0-9-]*'((?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+.^_`|~-])+)$/;

/** The bytes `%xx` escapes and literal characters stand for. */
const bytesOf = (encoded: string) =>
  Buffer.from(
    encoded.replace(/%([0-9A-Fa-f]{2})|./gs, (m: string, hex?: string) =>
      hex === undefined ? m : String.fromCharCode(parseInt(hex, 16)),
    ),
    'latin1',
  );

/** An extended value (`UTF-8''r%C3%A9sum%C3%A9.pdf`) decoded; undefined for a charset other than UTF-8 or ISO-8859-1. */
function decodeExtended(value: string): string | undefined {
  const match = EXTENDED.exec(value);
  if (match === null) return undefined;
  const charset = match[1]!.toLowerCase();
  const bytes = bytesOf(match[2]!);
  if (charset === 'utf-8' || charset === 'utf8') return new TextDecoder('utf-8').decode(bytes); // invalid bytes become U+FFFD
  if (charset === 'iso-8859-1') return bytes.toString('latin1');
  return undefined;
}

/**
 * The `filename*` (preferred, RFC 6266 §4.3) or `filename` parameter of a Content-Disposition
 * value; `undefined` when it has neither; `null` when the value is not RFC 6266's grammar at all.
 */
export function dispositionFilename(value: string): string | undefined | null {
  TYPE.lastIndex = 0;
  if (!TYPE.test(value)) return null;
  const parameters = new Map<string, string>();
  let at = TYPE.lastIndex;
  while (at < value.length) {
    PARAMETER.lastIndex = at;
    const match = PARAMETER.exec(value);
    if (match === null) return null;
    at = PARAMETER.lastIndex;
    const name = match[1]!.toLowerCase();
    if (parameters.has(name)) continue;
    const raw = match[2]!;
    if (name.endsWith('*')) {
      const decoded = decodeExtended(raw);
      if (decoded === undefined) return null;
      parameters.set(name, decoded);
    } else {
      parameters.set(name, raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw);
    }
  }
  return parameters.get('filename*') ?? parameters.get('filename');
}
