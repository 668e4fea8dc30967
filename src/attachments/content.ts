import { createHash } from 'node:crypto';
import { fileTypeFromBuffer } from 'file-type';
import { FileTypeMismatch, FileTypeRefused } from './errors.js';

/** The bytes a type is decided from: enough for every signature file-type knows, including the zip directory of Office files. */
const SNIFF_BYTES = 64 * 1024;

/** Other names clients use for the same types. */
const ALIASES: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'application/x-pdf': 'application/pdf',
  'text/x-markdown': 'text/markdown',
  'application/csv': 'text/csv',
};

/** Text formats whose bytes are plain text: the declared one is kept when the bytes are text. */
const TEXT_TYPES = new Set(['text/plain', 'text/csv', 'text/markdown']);

/** A media type's essence, lower-case, without parameters, aliases resolved. */
export function essence(contentType: string | undefined): string | undefined {
  const value = contentType?.split(';')[0]?.trim().toLowerCase();
  if (!value) return undefined;
  return ALIASES[value] ?? value;
}

/**
 * Markup a browser would render, recognised the way the WHATWG MIME Sniffing standard does (its
 * "rules for identifying an unknown MIME type"): one of these tags at the start of the text,
 * after whitespace, followed by a space or `>`.
 */
const HTML_START =
  /^(?:<!doctype html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style|<title|<b|<body|<br|<p|<!--)[\s>]/i;

/** The type of bytes that are not a binary format file-type knows: UTF-8 text (and which kind), or unknown binary. */
function textTypeOf(sample: Buffer, complete: boolean): string {
  let text: string;
  try {
    // `stream: true` leaves a character cut by the end of the sample undecoded instead of failing.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(sample, { stream: !complete });
  } catch {
    return 'application/octet-stream';
  }
  // Controls other than tab, line feed, form feed, carriage return and escape mean binary.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\u0000-\u0008\u000b\u000e-\u001a\u001c-\u001f\u007f]/.test(text)) return 'application/octet-stream';
  const start = text.trimStart();
  if (/^<\?xml[\s?]/i.test(start) || /^<svg[\s>]/i.test(start))
    return /<svg[\s>]/i.test(start.slice(0, 4096)) ? 'image/svg+xml' : 'application/xml';
  if (HTML_START.test(start)) return 'text/html';
  return 'text/plain';
}

/** The type of a file from its first bytes (`complete` when that is all of it). */
export async function sniff(sample: Buffer, complete: boolean): Promise<string> {
  const found = await fileTypeFromBuffer(sample);
  return found?.mime ?? textTypeOf(sample, complete);
}

/**
 * The type to store for a file whose bytes are `found` and that was declared `declared` (or
 * nothing, or application/octet-stream: "find out"): the bytes decide; a text format keeps the
 * declared kind of text. Refuses (415) a type not in `allowed` and a declaration the bytes
 * disagree with.
 */
export function decideType(found: string, declared: string | undefined, allowed: readonly string[]): string {
  const claimed = essence(declared);
  const unspecified = claimed === undefined || claimed === 'application/octet-stream';
  const type = found === 'text/plain' && claimed !== undefined && TEXT_TYPES.has(claimed) ? claimed : found;
  if (!unspecified && claimed !== type) throw new FileTypeMismatch(claimed, found);
  if (!allowed.includes(type)) throw new FileTypeRefused(type, allowed);
  return type;
}

export interface Inspected {
  contentType: string;
  size: number;
  /** Lower-case hex. */
  sha256: string;
}

/**
 * `source` passed through as it is read, after its type is decided from its first bytes (so a
 * refused file is refused before a byte is stored), counted (`tooLarge()` is thrown the moment
 * it passes `limit` bytes: the upload is cut off there, never read to the end) and hashed.
 * `result()` is available once the bytes have been read to the end.
 */
export function inspect(
  source: AsyncIterable<Buffer>,
  options: { limit: number; tooLarge: () => Error; declared?: string; allowed: readonly string[] },
): { bytes: AsyncIterable<Buffer>; result(): Inspected } {
  const hash = createHash('sha256');
  let size = 0;
  let contentType: string | undefined;
  let done = false;
  const count = (piece: Buffer) => {
    size += piece.length;
    if (size > options.limit) throw options.tooLarge();
    hash.update(piece);
    return piece;
  };
  async function* bytes(): AsyncIterable<Buffer> {
    const iterator = source[Symbol.asyncIterator]();
    try {
      const head: Buffer[] = [];
      let headBytes = 0;
      let ended = false;
      while (headBytes < SNIFF_BYTES) {
        const next = await iterator.next();
        if (next.done) {
          ended = true;
          break;
        }
        head.push(count(next.value));
        headBytes += next.value.length;
      }
      const sample = Buffer.concat(head, headBytes);
      contentType = decideType(
        await sniff(sample.subarray(0, SNIFF_BYTES), ended && headBytes <= SNIFF_BYTES),
        options.declared,
        options.allowed,
      );
      if (sample.length > 0) yield sample;
      if (!ended) {
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield count(next.value);
      }
      done = true;
    } finally {
      // Refused or abandoned half-way: let go of the source, so what is left of it can be discarded.
      if (!done) await iterator.return?.();
    }
  }
  return {
    bytes: bytes(),
    result() {
      if (!done || contentType === undefined) throw new Error('the upload has not been read to its end');
      return { contentType, size, sha256: hash.digest('hex') };
    },
  };
}
