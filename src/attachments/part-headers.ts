import contentDisposition from 'content-disposition';
import type { Readable } from 'node:stream';

/** The longest part header block busboy reads (its MAX_HEADER_SIZE); a longer one is busboy's error to report, not ours to parse. */
const MAX_HEADER_BYTES = 16 * 1024;
const HEADER_END = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/** `boundary` of a multipart Content-Type, quoted or not; one with a quoted-pair is left alone (busboy unquotes it, this would not). */
const BOUNDARY = /;\s*boundary\s*=\s*(?:"([^"\\]+)"|([^\s;"]+))/i;

export interface PartHeaders {
  /**
   * Whether the first part named `name` had a Content-Type header of its own; undefined when it
   * was not seen (no boundary understood, a header block too long, or no such part yet).
   */
  typed(name: string): boolean | undefined;
  /**
   * Whether the first part named `name` had a file name: a `filename` (or `filename*`) parameter
   * in its Content-Disposition that is not empty, which is what busboy needs to see to take a part
   * for a file rather than a field (unless it is typed application/octet-stream). Undefined when
   * the part was not seen, as for {@link typed}.
   */
  named(name: string): boolean | undefined;
}

interface Part {
  name?: string;
  typed: boolean;
  named: boolean;
}

/** The part's `name` (Content-Disposition: form-data), whether it carries a Content-Type, and whether a file name. */
function parse(block: string): Part {
  let name: string | undefined;
  let disposition = false;
  let typed = false;
  let named = false;
  // Folded lines continue the header above them, as busboy reads them.
  for (const line of block.replace(/\r\n(?=[ \t])/g, '').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const field = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (field === 'content-type' && value !== '') typed = true;
    if (field === 'content-disposition' && !disposition) {
      disposition = true;
      try {
        const parsed = contentDisposition.parse(value);
        if (parsed.type === 'form-data') {
          name = parsed.parameters.name;
          // `filename*` comes out decoded as `filename`; busboy takes an empty one for none.
          named = (parsed.parameters.filename ?? '') !== '';
        }
      } catch {
        // Not one busboy's name would match either; the part stays unnamed here.
      }
    }
  }
  return { name, typed, named };
}

/**
 * Whether a multipart body's parts carry a Content-Type of their own. Busboy gives a part
 * without one the type `text/plain` (RFC 7578's default for form fields) and its `info` does
 * not say which it was, so a file sent without a type would be held to being text. (And busboy
 * takes a part without a file name for a field, which the watcher also notes, so that a `file`
 * part sent so can be refused for what it lacks, whenever busboy reports it.) This reads
 * the part header blocks from the same bytes: it listens to `req` before busboy is piped in, so
 * it has seen a part's headers by the time busboy announces the part. It finds parts as busboy
 * does (the delimiter CRLF `--boundary`, the body read as if it began with CRLF, then a CRLF
 * and the headers up to an empty line), and stops listening at the first part named `file`
 * (the only one an upload cares about, and the file's own bytes are never searched), at the
 * closing delimiter, after `maxParts` header blocks, or at a header block longer than busboy's.
 */
export function watchPartHeaders(req: Readable, contentType: string | undefined, maxParts: number): PartHeaders {
  const parts: Part[] = [];
  const answer: PartHeaders = {
    typed: (name) => parts.find((part) => part.name === name)?.typed,
    named: (name) => parts.find((part) => part.name === name)?.named,
  };
  const match = BOUNDARY.exec(contentType ?? '');
  const boundary = match?.[1] ?? match?.[2];
  if (boundary === undefined) return answer;

  // Encoded as busboy encodes it (streamsearch's Buffer.from), so the two find the same delimiters.
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  /** Bytes that may be the start of a delimiter, kept for the next chunk (never more than a delimiter and two). */
  let pending: Buffer = CRLF;
  /** Within a part's header block: its bytes so far, and how much of CRLF CRLF (its end) the last of them were. */
  let headers: Buffer[] | undefined;
  let headerBytes = 0;
  let ended = 0;
  const stop = () => {
    req.off('data', onData);
    pending = Buffer.alloc(0);
    headers = undefined;
  };
  function onData(chunk: Buffer) {
    const data = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    pending = Buffer.alloc(0);
    let at = 0;
    for (;;) {
      if (headers === undefined) {
        const found = data.indexOf(delimiter, at);
        if (found === -1) {
          pending = data.subarray(Math.max(at, data.length - delimiter.length + 1));
          return;
        }
        const after = found + delimiter.length;
        if (data.length < after + 2) {
          pending = data.subarray(found);
          return;
        }
        if (data[after] === 0x2d && data[after + 1] === 0x2d) return stop(); // `--`: the closing delimiter
        at = after;
        if (data[after] !== 0x0d || data[after + 1] !== 0x0a) continue; // not followed by CRLF: no part starts here
        at += 2;
        headers = [];
        headerBytes = 0;
        ended = 0;
      }
      // Byte by byte to the empty line, each byte looked at once however the block is cut.
      let i = at;
      for (; i < data.length && ended < HEADER_END.length; i += 1)
        ended = data[i] === HEADER_END[ended] ? ended + 1 : data[i] === 0x0d ? 1 : 0;
      headers.push(data.subarray(at, i));
      headerBytes += i - at;
      if (headerBytes > MAX_HEADER_BYTES) return stop();
      if (ended < HEADER_END.length) return;
      const part = parse(Buffer.concat(headers, headerBytes).toString('latin1', 0, headerBytes - HEADER_END.length));
      parts.push(part);
      if (part.name === 'file' || parts.length >= maxParts) return stop();
      headers = undefined;
      at = i;
    }
  }
  req.on('data', onData);
  req.once('end', stop);
  req.once('close', stop);
  return answer;
}
