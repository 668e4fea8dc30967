import type { OwnerId } from '../db/owner-id.js';

/*
 * The owner of a row, as the rest of the app sees it: the branded type (declared in db, which
 * scopes rows by it and may not import auth) and the only function that makes one. Features
 * import both from here.
 */
export type { OwnerId };

/** The `sub` of a token that has been verified, as the owner of the rows its requests may touch. */
export function ownerIdFromVerifiedSubject(sub: string): OwnerId {
  return sub as OwnerId;
}
