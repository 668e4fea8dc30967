import type { Kysely } from 'kysely';
import type { components } from '../../generated/api.js';
import type { OwnerId } from '../auth/owner-id.js';
import type { OwnerScope } from '../db/owner-scope.js';
import type { DB } from '../db/schema.js';
import { toTask } from '../tasks/task.mapper.js';
import { readChanges } from './changes.repository.js';
import { ChangesTokenExpired, InvalidChangeToken, type TokenSource } from './errors.js';
import type { ChangeTokens } from './token.js';

export type Change = components['schemas']['Change'];
export type ChangePage = components['schemas']['ChangePage'];

/** A position given by the client: its token and where it came from (for the 422 that names it). */
export interface Since {
  token: string;
  source: TokenSource;
}

export interface ChangeFeed {
  /** The position of the owner's latest change now: the bootstrap's starting point. */
  head(owner: OwnerId): Promise<number>;
  /** The token for `position`. */
  token(owner: OwnerId, position: number): Promise<string>;
  /** The position `since` holds for `owner` (422 when it is not the owner's token), checked against the history (410). */
  position(owner: OwnerId, since: Since): Promise<number>;
  /** Up to `limit` changes after `position`, each with the token after it, and where to go on from. */
  after(
    owner: OwnerId,
    position: number,
    limit: number,
  ): Promise<{ changes: Change[]; position: number; hasMore: boolean }>;
}

/**
 * The sync feed over the change history: verifies and issues tokens, turns rows into the
 * contract's changes, and answers 410 for a position the history can no longer vouch for.
 */
export function changeFeed(deps: { asOwner: OwnerScope; tokens: ChangeTokens; retentionDays: number }): ChangeFeed {
  const { asOwner, tokens, retentionDays } = deps;
  const read = (owner: OwnerId, since: number, limit: number) =>
    asOwner(owner, (scoped: Kysely<DB>) => readChanges(scoped, owner, since, limit));

  return {
    async head(owner) {
      return (await read(owner, Number.MAX_SAFE_INTEGER, 1)).head;
    },
    token: (owner, position) => tokens.sign(owner, position),
    async position(owner, since) {
      const position = await tokens.verify(owner, since.token);
      if (position === undefined) throw new InvalidChangeToken(since.source);
      return position;
    },
    async after(owner, position, limit) {
      // One more than asked: whether more are waiting, without a second read.
      const seen = await read(owner, position, limit + 1);
      // Below the pruning mark a deletion may have been forgotten; above the head is a token from
      // a history this database does not have (a restore from an older backup).
      if (position < seen.prunedThrough || position > seen.head) throw new ChangesTokenExpired(retentionDays);
      const page = seen.changes.slice(0, limit);
      const hasMore = seen.changes.length > limit;
      const changes = await Promise.all(
        page.map(async (change): Promise<Change> =>
          change.deleted
            ? {
                op: 'delete',
                token: await tokens.sign(owner, change.seq),
                task: { ...change.task, deleted_at: change.task.deleted_at.toISOString() },
              }
            : { op: 'upsert', token: await tokens.sign(owner, change.seq), task: toTask(change.task) },
        ),
      );
      return { changes, position: hasMore ? page.at(-1)!.seq : Math.max(seen.head, position), hasMore };
    },
  };
}
