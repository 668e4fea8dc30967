import type { Request } from 'express';

/**
 * A page's answer: the page, and when there is a next one a `Link: <…>; rel="next"` header
 * holding the same request, filters and all, with the next cursor.
 */
export function pageWithLink<P extends { next_cursor: string | null }>(raw: Request, page: P): { status: 200; body: P; headers?: Record<string, string> } {
  if (page.next_cursor === null) return { status: 200, body: page };
  const next = new URL(raw.originalUrl, 'http://placeholder');
  next.searchParams.set('cursor', page.next_cursor);
  return { status: 200, body: page, headers: { Link: `<${next.pathname}${next.search}>; rel="next"` } };
}
