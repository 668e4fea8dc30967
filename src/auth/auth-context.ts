import type { OwnerId } from './owner-id.js';

export const SCOPES = ['tasks:read', 'tasks:write'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling, as established from a verified token and nothing else. */
export interface AuthContext {
  ownerId: OwnerId;
  sub: string;
  scopes: ReadonlySet<Scope>;
  roles: string[];
  email: string | null;
  name: string | null;
}
