declare const brand: unique symbol;

/**
 * The owner of a row: a verified token's `sub`. Only the auth layer makes one, so a repository
 * that requires an `OwnerId` cannot be handed an id that came from a path, query or body.
 */
export type OwnerId = string & { readonly [brand]: 'OwnerId' };

export function ownerIdFromVerifiedSubject(sub: string): OwnerId {
  return sub as OwnerId;
}
