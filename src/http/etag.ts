/**
 * Entity tags for versioned resources (RFC 9110 §8.8.3, §13.1.1–2). A resource at version `n`
 * has the strong ETag `"n"`.
 */
export const etagOf = (version: number): string => `"${version}"`;

/** The largest version a task can have (PostgreSQL `integer`). */
const MAX_VERSION = 2 ** 31 - 1;

/** The entity tags of an `If-Match` / `If-None-Match` value: `*`, or each listed tag. */
type EntityTags = '*' | { tag: string; weak: boolean }[];

function parseEntityTags(header: string): EntityTags {
  if (header.trim() === '*') return '*';
  return [...header.matchAll(/(W\/)?"([^"]*)"/g)].map(([, weak, tag]) => ({ tag: tag!, weak: weak !== undefined }));
}

/**
 * The versions an `If-Match` header accepts: `'any'` without the header or for `*`, else the
 * versions of its strong tags (If-Match compares strongly; a weak or foreign tag matches nothing,
 * so an empty list means no version can match).
 */
export function versionsMatching(ifMatch: string | undefined): 'any' | number[] {
  if (ifMatch === undefined) return 'any';
  const tags = parseEntityTags(ifMatch);
  if (tags === '*') return 'any';
  // Entity tags compare as exact strings: only the form etagOf writes names a version, so "01"
  // and "+1" match nothing, and neither does a number no version column can hold.
  return tags
    .filter(({ weak, tag }) => !weak && /^(0|[1-9][0-9]{0,9})$/.test(tag) && Number(tag) <= MAX_VERSION)
    .map(({ tag }) => Number(tag));
}

/** Whether `If-None-Match` matches the current version (weak comparison: `W/"3"` matches `"3"`). */
export function noneMatchHits(ifNoneMatch: string | undefined, version: number): boolean {
  return noneMatchHitsTag(ifNoneMatch, String(version));
}

/** Whether `If-None-Match` names the entity tag `"<tag>"` or is `*` (weak comparison). */
export function noneMatchHitsTag(ifNoneMatch: string | undefined, tag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  const tags = parseEntityTags(ifNoneMatch);
  return tags === '*' || tags.some((entity) => entity.tag === tag);
}
