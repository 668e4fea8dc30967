/** The contract's `maxLength` of a filename (AttachmentFilename.yaml). */
export const MAX_FILENAME = 255;

/**
 * C0 and C1 controls, DEL, and the bidirectional controls that can make `exe.pdf` read as
 * `fdp.exe` (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g;
/** Unpaired UTF-16 surrogates, which PostgreSQL cannot store. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A client's file name made safe to store, show and send back: NFC, the last path component only
 * (either separator), unsafe characters removed, no leading or trailing dots and spaces, at most
 * {@link MAX_FILENAME} characters (cut at a code point, keeping the extension when it is short).
 * Never used as a path: storage is keyed by server-made ids.
 */
export function safeFilename(raw: string | undefined): string {
  const base = (raw ?? '').normalize('NFC').replace(LONE_SURROGATE, '').split(/[/\\]/).pop() ?? '';
  const cleaned = base.replace(UNSAFE, '').replace(/^[\s.]+|[\s.]+$/g, '');
  const chars = [...cleaned];
  if (chars.length === 0) return 'attachment';
  if (chars.length <= MAX_FILENAME) return cleaned;
  const dot = cleaned.lastIndexOf('.');
  const extension = dot > 0 ? [...cleaned.slice(dot)] : [];
  const keep = extension.length > 0 && extension.length <= 16 ? extension : [];
  return chars.slice(0, MAX_FILENAME - keep.length).join('') + keep.join('');
}
