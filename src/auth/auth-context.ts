import type { OwnerId } from './owner-id.js';

export const SCOPES = ['tasks:read', 'tasks:write'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling, as established from a verified token and nothing else. */
export interface AuthContext {
  readonly ownerId: OwnerId;
  readonly sub: string;
  readonly scopes: ReadonlySet<Scope>;
  readonly roles: readonly string[];
  readonly email: string | null;
  readonly name: string | null;
}
