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
  /** Until when (ms since the epoch) the token may be used: its `exp`, or less when the server caps a token's age. Long-lived responses (change streams) end by then. */
  readonly usableUntilMs?: number;
}
