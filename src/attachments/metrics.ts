import { Counter, type Registry } from 'prom-client';
import type { AttachmentMetrics } from './attachments.service.js';

/** Bytes in and out, and refused uploads by reason (the problem code, or `CLIENT_GONE`). Never anything of a file's contents. */
export function attachmentMetrics(registry: Registry): AttachmentMetrics {
  const uploaded = new Counter({
    name: 'attachment_uploaded_bytes_total',
    help: 'Bytes of attachments stored (each upload counted, duplicates included).',
    registers: [registry],
  });
  const downloaded = new Counter({
    name: 'attachment_downloaded_bytes_total',
    help: 'Bytes of attachments sent.',
    registers: [registry],
  });
  const rejected = new Counter({
    name: 'attachment_uploads_rejected_total',
    help: 'Uploads that stored nothing, by reason (FILE_TOO_LARGE, QUOTA_EXCEEDED, FILE_TYPE_REFUSED, FILE_TYPE_MISMATCH, MALFORMED_UPLOAD, CLIENT_GONE, ...).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  return {
    uploaded: (bytes) => uploaded.inc(bytes),
    downloaded: (bytes) => downloaded.inc(bytes),
    rejected: (reason) => rejected.inc({ reason }),
  };
}
