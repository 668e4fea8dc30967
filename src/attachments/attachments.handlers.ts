import busboy from 'busboy';
import contentDisposition from 'content-disposition';
import type { Request } from 'express';
import type { OwnerId } from '../auth/owner-id.js';
import { ClientGone, HttpProblem, ValidationFailed } from '../errors/problem.js';
import { noneMatchHitsTag } from '../http/etag.js';
import { StreamedBody, type Handlers } from '../http/handler.js';
import { pageWithLink } from '../http/paging.js';
import { dispositionFilename } from './disposition.js';
import { toAttachment, type AttachmentService, type IncomingFile } from './attachments.service.js';
import { MalformedUpload, RangeNotSatisfiable } from './errors.js';
import { safeFilename } from './filename.js';
import { watchPartHeaders } from './part-headers.js';
import { chooseRange } from './range.js';

export type AttachmentOperation =
  'listAttachments' | 'uploadAttachment' | 'getAttachment' | 'deleteAttachment' | 'downloadAttachment';

/** Room a multipart body needs around its file (boundaries, part headers, a filename field), for the early Content-Length check. */
const MULTIPART_OVERHEAD = 16 * 1024;

/** The fields an upload takes besides its file (AttachmentUpload.yaml), and what busboy may read of them. */
const MULTIPART_LIMITS = { files: 1, fields: 1, parts: 3, fieldSize: 1024, fieldNameSize: 100, headerPairs: 8 };

/**
 * For a `file` part busboy took for a field: one without a file name (RFC 7578 §4.2 says a file
 * part SHOULD have one; busboy needs it, unless the part is typed application/octet-stream, to
 * stream the part as a file rather than hold it as a field).
 */
const FILE_WITHOUT_FILENAME =
  'The part named "file" has no filename in its Content-Disposition (RFC 7578 §4.2), so it is a form field, not a file: send Content-Disposition: form-data; name="file"; filename="report.pdf".';

/** Headers every download carries: the browser saves the file and never runs it in our origin. */
const DOWNLOAD_HEADERS = {
  'Accept-Ranges': 'bytes',
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "sandbox; default-src 'none'",
  'Cache-Control': 'private, no-cache',
};

/**
 * The request's own bytes as the file; a request that ends early is the client gone. Left half-way
 * (the upload was refused), the request is not destroyed: the rest is discarded and the answer sent.
 */
async function* requestBytes(req: Request): AsyncIterable<Buffer> {
  const aborted = req.transferAborted;
  const pieces = req.iterator({ destroyOnReturn: false });
  // Ends the read at once when the upload is too slow (the capacity guard aborts it): the
  // handler answers 408 and removes what was stored.
  const stopped =
    aborted &&
    new Promise<never>((_resolve, reject) => {
      const stop = () => reject(aborted.reason as Error); // the guard's TransferTooSlow (AbortSignal types `reason` any)
      if (aborted.aborted) stop();
      else aborted.addEventListener('abort', stop, { once: true });
    });
  stopped?.catch(() => undefined);
  try {
    for (;;) {
      const next = await (stopped ? Promise.race([pieces.next(), stopped]) : pieces.next());
      if (next.done) return;
      yield next.value as Buffer;
    }
  } catch (error) {
    throw req.complete || error instanceof HttpProblem ? error : new ClientGone(error);
  } finally {
    // Not awaited: after an abort a read is still pending, and return() would wait for it.
    void pieces.return?.();
  }
}

/** A multipart file part's bytes; busboy's own complaints (the body ended mid-part) are the body's fault: 400. */
async function* partBytes(stream: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  try {
    yield* stream;
  } catch (error) {
    throw error instanceof HttpProblem || error instanceof ClientGone
      ? error
      : new MalformedUpload(`The multipart body is malformed: ${(error as Error).message}.`);
  }
}

/** A raw upload: the body is the file, its type the request's, its name in Content-Disposition. */
function rawFile(req: Request): IncomingFile {
  let name: string | undefined;
  const disposition = req.get('Content-Disposition');
  if (disposition !== undefined) {
    const parsed = dispositionFilename(disposition);
    if (parsed === null) {
      // The contract's pattern refuses such a value before this runs; kept so that it never passes silently.
      throw new ValidationFailed([
        {
          in: 'header',
          pointer: '/Content-Disposition',
          detail: 'is not a Content-Disposition value (RFC 6266), e.g. attachment; filename="report.pdf"',
        },
      ]);
    }
    name = parsed;
  }
  const filename = safeFilename(name);
  return {
    bytes: requestBytes(req),
    declaredType: req.get('Content-Type'),
    filename: () => filename,
    finished: Promise.resolve(),
  };
}

/**
 * A multipart upload, resolved at its `file` part, whose bytes are then read as they arrive.
 * Whatever else the body holds is checked as it comes: the optional `filename` field, and
 * nothing more (a second file, another field or broken framing rejects `finished`, and the
 * upload with it).
 */
function multipartFile(req: Request): Promise<IncomingFile> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers, limits: MULTIPART_LIMITS, defParamCharset: 'utf8' });
    } catch (error) {
      reject(new MalformedUpload(`The multipart body cannot be read: ${(error as Error).message}.`));
      return;
    }
    // Busboy calls a part without a Content-Type text/plain and does not say so; this says which it was.
    const partHeaders = watchPartHeaders(req, req.get('Content-Type'), MULTIPART_LIMITS.parts);
    let file: (NodeJS.ReadableStream & { destroy(error?: Error): void }) | undefined;
    let partName: string | undefined;
    let fieldName: string | undefined;
    let failFinished: (error: Error) => void = () => undefined;
    const finished = new Promise<void>((done, failed) => {
      parser.once('close', done);
      failFinished = failed;
    });
    finished.catch(() => undefined); // observed by the service; never unhandled before it looks
    const fail = (error: Error) => {
      req.unpipe(parser);
      if (file) file.destroy(error);
      else reject(error);
      failFinished(error);
    };
    parser.on('file', (name, stream, info) => {
      if (name !== 'file') {
        stream.resume();
        fail(new MalformedUpload(`The upload's file part must be named "file", not "${name.slice(0, 100)}".`));
        return;
      }
      // Failures reach the reader through its iterator; one that comes when nobody is reading any
      // more (the upload was already refused) must not be an unhandled 'error' event.
      stream.on('error', () => undefined);
      file = stream;
      partName = info.filename;
      resolve({
        bytes: partBytes(stream as AsyncIterable<Buffer>),
        // A file part without a type of its own is decided by its bytes alone, as a raw upload without one.
        declaredType: partHeaders.typed(name) === false ? undefined : info.mimeType,
        filename: () => safeFilename(fieldName ?? partName),
        finished,
      });
    });
    parser.on('field', (name, value, info) => {
      if (name === 'file') return fail(new MalformedUpload(FILE_WITHOUT_FILENAME));
      if (name !== 'filename')
        return fail(
          new MalformedUpload(
            `The upload takes a "file" part and an optional "filename" field, not "${name.slice(0, 100)}".`,
          ),
        );
      if (info.valueTruncated) return fail(new MalformedUpload('The "filename" field is longer than 1024 bytes.'));
      fieldName = value;
    });
    parser.on('filesLimit', () =>
      fail(new MalformedUpload('The upload holds more than one file; send one per request.')),
    );
    // After a `filename` field, a `file` part without a file name is one field too many.
    parser.on('fieldsLimit', () =>
      fail(
        new MalformedUpload(
          partHeaders.named('file') === false ? FILE_WITHOUT_FILENAME : 'The upload holds more fields than "filename".',
        ),
      ),
    );
    parser.on('partsLimit', () =>
      fail(new MalformedUpload('The upload holds more parts than a file and its "filename".')),
    );
    parser.on('error', (error: Error) =>
      fail(new MalformedUpload(`The multipart body is malformed: ${error.message}.`)),
    );
    parser.on('close', () => {
      if (file === undefined) fail(new MalformedUpload('The multipart body has no part named "file".', 'FILE_MISSING'));
    });
    req.once('close', () => {
      if (!req.complete) fail(new ClientGone());
    });
    // Too slow (the capacity guard aborts it): the part's reader fails with the 408.
    const aborted = req.transferAborted;
    if (aborted?.aborted) return fail(aborted.reason as Error);
    aborted?.addEventListener('abort', () => fail(aborted.reason as Error), { once: true });
    req.pipe(parser);
  });
}

/**
 * After an upload is refused before its body was read to the end: nothing more of it is stored or
 * parsed, but what the client still sends is read and thrown away, as nginx's lingering close
 * does. Closing the connection instead would make a client that is still sending miss the answer
 * (its sends reset the connection, and the unread answer with it). How long that can go on is
 * bounded as for any request, by CLIENT_REQUEST_TIMEOUT_MS.
 */
function discardRest(req: Request): void {
  req.unpipe();
  req.resume();
}

/** Whether a Range may be honoured: no If-Range, or one naming the current file. */
const ifRangeHolds = (ifRange: string | undefined, etag: string) => ifRange === undefined || ifRange.trim() === etag;

/** HTTP for attachments: streaming in (multipart or raw) and out (ranges, conditional), and the headers that keep a stored file inert. */
export function attachmentHandlers(service: AttachmentService): Handlers<AttachmentOperation> {
  return {
    listAttachments: async ({ auth, path, query, raw }) =>
      pageWithLink(raw, await service.list(auth.ownerId, path.taskId, query)),

    async uploadAttachment({ auth, path, raw }) {
      const owner: OwnerId = auth.ownerId;
      try {
        const allowance = await service.allowance(owner, path.taskId);
        const multipart = raw.is('multipart/form-data') === 'multipart/form-data';
        // A declared length already over the limit is refused before a byte is read.
        const declared = Number(raw.get('Content-Length'));
        if (Number.isFinite(declared) && declared > allowance.limit + (multipart ? MULTIPART_OVERHEAD : 0))
          throw allowance.tooLarge();
        const file = multipart ? await multipartFile(raw) : rawFile(raw);
        const attachment = await service.upload(owner, path.taskId, file, allowance);
        return {
          status: 201,
          body: attachment,
          headers: { Location: `${raw.baseUrl}/api/v1/attachments/${attachment.id}` },
        };
      } catch (error) {
        if (!raw.complete) discardRest(raw);
        throw error;
      }
    },

    getAttachment: async ({ auth, path }) => ({
      status: 200,
      body: toAttachment(await service.get(auth.ownerId, path.attachmentId)),
    }),

    async deleteAttachment({ auth, path }) {
      await service.remove(auth.ownerId, path.attachmentId);
      return { status: 204 };
    },

    async downloadAttachment({ auth, path, raw }) {
      const row = await service.get(auth.ownerId, path.attachmentId);
      const size = Number(row.size);
      const etag = `"${row.sha256}"`;
      if (noneMatchHitsTag(raw.get('If-None-Match'), row.sha256)) return { status: 304, headers: { ETag: etag } };
      const headers: Record<string, string> = {
        ...DOWNLOAD_HEADERS,
        ETag: etag,
        'Content-Type': row.content_type,
        // The quoted fallback in ASCII (what the contract allows in a header), the name itself in filename*.
        'Content-Disposition': contentDisposition(row.filename, {
          fallback: row.filename.replace(/[^\x20-\x7e]/g, '?'),
        }),
      };
      let range = { start: 0, end: size - 1 };
      let partial = false;
      const asked = raw.get('Range');
      if (asked !== undefined && size > 0 && ifRangeHolds(raw.get('If-Range'), etag)) {
        // One range (or ranges that merge into one) is a 206; anything else the whole file (see chooseRange).
        const chosen = chooseRange(asked, size);
        if (chosen === 'unsatisfiable') throw new RangeNotSatisfiable(asked, size);
        if (chosen !== 'whole') {
          range = chosen;
          partial = true;
          headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
        }
      }
      headers['Content-Length'] = String(Math.max(0, range.end - range.start + 1));
      const body = new StreamedBody(size === 0 ? (async function* () {})() : service.content(auth.ownerId, row, range));
      return partial ? { status: 206, headers, body } : { status: 200, headers, body };
    },
  };
}
