import { HttpProblem } from '../errors/problem.js';

/** 404 for an attachment that does not exist and for another user's alike. */
export class AttachmentNotFound extends HttpProblem {
  constructor(id: string) {
    super(404, 'ATTACHMENT_NOT_FOUND', 'Attachment not found', `No attachment ${id} exists for this user.`);
  }
}

/** 413 for a file over the per-file limit, found before a byte is stored or the moment it passes the limit. */
export class FileTooLarge extends HttpProblem {
  constructor(limit: number) {
    super(
      413,
      'FILE_TOO_LARGE',
      'Payload too large',
      `The file exceeds the limit of ${limit} bytes per file; nothing was stored.`,
    );
  }
}

/** 413 for a file larger than what is left of the owner's quota. */
export class QuotaExceeded extends HttpProblem {
  constructor(left: number, quota: number) {
    super(
      413,
      'QUOTA_EXCEEDED',
      'Payload too large',
      `The file does not fit in your storage quota: ${left} of ${quota} bytes are left; nothing was stored.`,
    );
  }
}

/** 415 for a file whose bytes are of a type the server does not take. */
export class FileTypeRefused extends HttpProblem {
  constructor(found: string, allowed: readonly string[]) {
    super(
      415,
      'FILE_TYPE_REFUSED',
      'Unsupported media type',
      `The file's bytes are ${found}, which is not accepted (accepted here: ${allowed.join(', ')}); nothing was stored.`,
    );
  }
}

/** 415 for a declared type the bytes disagree with. */
export class FileTypeMismatch extends HttpProblem {
  constructor(declared: string, found: string) {
    super(
      415,
      'FILE_TYPE_MISMATCH',
      'Unsupported media type',
      `The file was declared ${declared}, but its bytes are ${found}; nothing was stored.`,
    );
  }
}

/** 400 for a body that is not a well-formed upload. */
export class MalformedUpload extends HttpProblem {
  constructor(detail: string, code = 'MALFORMED_UPLOAD') {
    super(400, code, 'Malformed upload', `${detail} Nothing was stored.`);
  }
}

/** 422 when the task already has as many attachments as it may. */
export class AttachmentLimitReached extends HttpProblem {
  constructor(taskId: string, limit: number) {
    super(
      422,
      'ATTACHMENT_LIMIT_REACHED',
      'Too many attachments',
      `Task ${taskId} already has ${limit} attachments, the most a task may have; delete one first.`,
    );
  }
}

/** 416 for a Range wholly beyond the end of the file. */
export class RangeNotSatisfiable extends HttpProblem {
  constructor(range: string, size: number) {
    super(
      416,
      'RANGE_NOT_SATISFIABLE',
      'Range not satisfiable',
      `The file has ${size} bytes; ${range.slice(0, 100)} asks for none of them.`,
      {
        headers: { 'Content-Range': `bytes */${size}` },
      },
    );
  }
}

/** The client went away (or stopped sending) before the upload was complete: there is nobody to answer. */
export class UploadAborted extends Error {
  override name = 'UploadAborted';
  readonly code = 'UPLOAD_ABORTED';
}
