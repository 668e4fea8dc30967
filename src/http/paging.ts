import { createHash } from 'node:crypto';
import type { Request } from 'express';
import { ValidationFailed } from '../errors/problem.js';

/*
 * Keyset paging, the same for every list of the API (tasks, attachments, webhook endpoints and
 * deliveries): opaque cursors bound to the query they were issued for, the page of `limit` rows,
 * and the `Link: rel="next"` header. Features import it from here; none owns it, so no feature
 * has to import another's internals to page.
 */

/** 422 for a cursor that was tampered with, truncated, or issued for other filters. */
export class InvalidCursor extends ValidationFailed {
  constructor(why: string) {
    super([{ in: 'query', pointer: '/cursor', detail: why }], `The cursor is not valid: ${why}.`);
  }
}

/** The keys a list can be ordered by: tasks offer all four, the other lists creation time only. */
export type SortField = 'created_at' | 'due_at' | 'priority' | 'title';
export interface Sort {
  field: SortField;
  direction: 'asc' | 'desc';
}

/** `-due_at` → due_at, descending. The validator has already limited `raw` to the documented values. */
export function parseSort(raw: string): Sort {
  return raw.startsWith('-')
    ? { field: raw.slice(1) as SortField, direction: 'desc' }
    : { field: raw as SortField, direction: 'asc' };
}

/** Where a page ended: the sort key of its last row (as text) and that row's id. */
export interface Position {
  key: string;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** What a sort key may look like, so that nothing but a valid value ever reaches SQL. */
const validKey: Record<SortField, (key: string, direction: Sort['direction']) => boolean> = {
  created_at: (key) => ISO_MS.test(key) && !Number.isNaN(Date.parse(key)),
  due_at: (key, direction) =>
    key === (direction === 'asc' ? 'infinity' : '-infinity') || (ISO_MS.test(key) && !Number.isNaN(Date.parse(key))),
  priority: (key) => key === '1' || key === '2' || key === '3',
  title: (key) => key.length >= 1 && key.length <= 800,
};

/**
 * A short digest of the sort and the filters a cursor belongs to. Two requests with the same
 * meaning give the same digest (lists are sorted, instants normalised), so a cursor works with
 * any spelling of its own query and with no other.
 */
export function queryFingerprint(parts: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 16);
}

/** Opaque to clients: base64url of a small JSON document. Not a secret, only a position. */
export function encodeCursor(position: Position, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ k: position.key, i: position.id, f: fingerprint })).toString('base64url');
}

/** The place of a row in a list ordered by creation time, then id (attachments, webhooks, deliveries). */
export const creationPosition = (row: { id: string; created_at: Date }): Position => ({
  key: row.created_at.toISOString(),
  id: row.id,
});

/**
 * One keyset page: the first `limit` of the `limit + 1` rows read, and a cursor after the last of
 * them (`positionOf` gives its place in the order) when there were more.
 */
export function pageOf<R, T>(
  rows: R[],
  limit: number,
  fingerprint: string,
  map: (row: R) => T,
  positionOf: (row: R) => Position,
): { items: T[]; next_cursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    items: page.map(map),
    next_cursor: rows.length > limit && last ? encodeCursor(positionOf(last), fingerprint) : null,
  };
}

/** Decodes a cursor made by {@link encodeCursor} for the same sort and filters, or throws `InvalidCursor`. */
export function decodeCursor(raw: string, fingerprint: string, sort: Sort): Position {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursor('it is not a cursor this API issued');
  }
  const { k, i, f } = (parsed ?? {}) as Record<string, unknown>;
  if (typeof k !== 'string' || typeof i !== 'string' || !UUID.test(i) || typeof f !== 'string') {
    throw new InvalidCursor('it is not a cursor this API issued');
  }
  if (f !== fingerprint) throw new InvalidCursor('it was issued for a different sort or different filters');
  if (!validKey[sort.field](k, sort.direction)) throw new InvalidCursor('it is not a cursor this API issued');
  return { key: k, id: i };
}

/**
 * A page's answer: the page, and when there is a next one a `Link: <…>; rel="next"` header
 * holding the same request, filters and all, with the next cursor.
 */
export function pageWithLink<P extends { next_cursor: string | null }>(
  raw: Request,
  page: P,
): { status: 200; body: P; headers?: Record<string, string> } {
  if (page.next_cursor === null) return { status: 200, body: page };
  const next = new URL(raw.originalUrl, 'http://placeholder');
  next.searchParams.set('cursor', page.next_cursor);
  return { status: 200, body: page, headers: { Link: `<${next.pathname}${next.search}>; rel="next"` } };
}
