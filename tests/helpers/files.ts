import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Database } from '../../src/db/database.js';

const chunk = (type: string, data: Buffer) => {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, Buffer.from(type, 'latin1'), data, Buffer.alloc(4)]);
};

/** A PNG of about `size` bytes: signature, IHDR, one IDAT of random bytes, IEND (file-type reads the chunk types). */
export function png(size = 4096): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(16, 0);
  ihdr.writeUInt32BE(16, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const fixed = signature.length + 25 + 12 + 12;
  return Buffer.concat([
    signature,
    chunk('IHDR', ihdr),
    chunk('IDAT', randomBytes(Math.max(1, size - fixed))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A PDF of about `size` bytes (its header, then random bytes). */
export const pdf = (size = 4096): Buffer =>
  Buffer.concat([Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1'), randomBytes(Math.max(0, size - 16))]);

/** An ELF executable's first bytes. */
export const elf = (): Buffer => Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(1024)]);

export const svg = (): Buffer =>
  Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"><script>alert(1)</script></svg>',
  );
export const html = (): Buffer =>
  Buffer.from('<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>');

export const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/**
 * What an owner has in the attachment tables, read past row-level security (the connecting role's
 * maintenance policy): every upload that failed must leave all of it at zero.
 */
export async function storedFor(database: Database, owner: string) {
  const count = async (table: string) =>
    Number(
      (
        await sql<{
          n: string | number;
        }>`select count(*) as n from ${sql.table(table)} where owner_id = ${owner}`.execute(database.db)
      ).rows[0]!.n,
    );
  const usage = await sql<{
    bytes: string | number;
  }>`select bytes from attachment_usage where owner_id = ${owner}`.execute(database.db);
  return {
    attachments: await count('attachments'),
    blobs: await count('attachment_blobs'),
    chunks: await count('attachment_chunks'),
    usedBytes: Number(usage.rows[0]?.bytes ?? 0),
  };
}

export const nothingStored = { attachments: 0, blobs: 0, chunks: 0, usedBytes: 0 };
