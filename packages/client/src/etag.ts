/**
 * The ETag header of the response each parsed body came from. Weak keys: a body the application
 * drops is collected with its entry. Shared by every client, so `ifMatch` needs no client.
 */
const etags = new WeakMap<object, string>();

/** Remembers `response`'s ETag for `data` (the client calls this for every body it parses). */
export function rememberETag(data: unknown, response: Response): void {
  const etag = response.headers.get('ETag');
  if (etag !== null && typeof data === 'object' && data !== null) etags.set(data, etag);
}

/**
 * The entity tag of a resource the client read: the `ETag` header of the response it came in,
 * else, for a task (the contract defines a task's ETag as its `version` in double quotes: items
 * of a list page have no header of their own), `"<version>"`. `undefined` when neither is known.
 */
export function etagOf(resource: object): string | undefined {
  const remembered = etags.get(resource);
  if (remembered !== undefined) return remembered;
  const version = (resource as { version?: unknown }).version;
  return typeof version === 'number' && Number.isSafeInteger(version) && version >= 0 ? `"${version}"` : undefined;
}

/**
 * The `If-Match` header for changing `resource` only if nobody changed it since it was read:
 * `api.PATCH('/api/v1/tasks/{taskId}', { params: { path: { taskId: t.id }, header: ifMatch(t) }, body })`.
 * A stale one gets 412. Throws a TypeError when the resource's ETag is unknown rather than
 * letting the write go out unconditionally.
 */
export function ifMatch(resource: object): { 'If-Match': string } {
  const etag = etagOf(resource);
  if (etag === undefined)
    throw new TypeError(
      'ifMatch: no ETag is known for this object (pass a body the client returned, or a task with its version)',
    );
  return { 'If-Match': etag };
}
