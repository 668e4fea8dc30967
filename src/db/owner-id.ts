declare const brand: unique symbol;

/**
 * The owner of a row: a verified token's `sub`. Only the auth layer makes one
 * (`ownerIdFromVerifiedSubject` in auth/owner-id.ts), so a repository that requires an `OwnerId`
 * cannot be handed an id that came from a path, query or body. The type is declared here, in the
 * layer that scopes rows by it, because db imports nothing from auth: the brand is a fact about
 * rows, making one is auth's business.
 */
export type OwnerId = string & { readonly [brand]: 'OwnerId' };
