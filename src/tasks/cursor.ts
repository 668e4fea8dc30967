import { InvalidCursor } from './errors.js';

/** Where a page ended: the sort key and id of its last row, and the filters it was made for. */
export interface Cursor {
  createdAt: Date;
  id: string;
  filter: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Opaque to clients: base64url of a small JSON document. Not a secret, only a position. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify({ c: cursor.createdAt.toISOString(), i: cursor.id, f: cursor.filter })).toString('base64url');
}

/** Decodes a cursor made by {@link encodeCursor} for the same filters, or throws `InvalidCursor`. */
export function decodeCursor(raw: string, filter: string): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursor('it is not a cursor this API issued');
  }
  const { c, i, f } = (parsed ?? {}) as Record<string, unknown>;
  const createdAt = typeof c === 'string' ? new Date(c) : undefined;
  if (!createdAt || Number.isNaN(createdAt.getTime()) || typeof i !== 'string' || !UUID.test(i) || typeof f !== 'string') {
    throw new InvalidCursor('it is not a cursor this API issued');
  }
  if (f !== filter) throw new InvalidCursor('it was issued for different filters');
  return { createdAt, id: i, filter: f };
}
