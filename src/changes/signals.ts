import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import type { Logger } from '../logger.js';

/**
 * Wake-ups for the live streams: "this owner's history moved". Only a hint: the history is the
 * truth, so a stream woken reads the history from its own position, and an extra wake-up costs a
 * read, never a repeated change.
 */
export interface ChangeSignals {
  /** Calls `wake` after a change of `owner` commits, through any process; returns the unsubscribe. */
  watch(owner: string, wake: () => void): () => void;
}

/**
 * The heads of the owners with open streams, read every `everyMs` in one indexed statement, and
 * each owner whose head moved woken: the same for a change made through this process, another
 * one, or a script, on PostgreSQL and PGlite alike. Not LISTEN/NOTIFY: a NOTIFY's commit takes a
 * lock shared by the whole server and holds it through the commit's WAL flush, which halved
 * concurrent writes (bench/changes.ts), and a transaction pooler cannot hold a LISTEN. The
 * statement runs only while streams are open, as the connecting role (the heads of every owner
 * watched, through the maintenance policy); a failed read is retried at the next tick, and an
 * owner first watched is woken at its first read, so no change between a stream's first read and
 * the poller's first look at its owner goes unseen.
 */
export function pollingSignals(db: Kysely<DB>, everyMs: number, logger: Logger): ChangeSignals {
  const watchers = new Map<string, Set<() => void>>();
  /** The head each watched owner had at the last read; absent until the first. */
  const seen = new Map<string, string>();
  let timer: NodeJS.Timeout | undefined;
  let failing = false;

  const wake = (owner: string) => {
    for (const each of watchers.get(owner) ?? []) each();
  };
  const tick = async () => {
    try {
      const { rows } = await sql<{ owner_id: string; seq: string }>`
        select owner_id, seq::text as seq from change_heads where owner_id = any(${[...watchers.keys()]}::text[])`.execute(
        db,
      );
      failing = false;
      for (const { owner_id, seq } of rows) {
        if (seen.get(owner_id) === seq || !watchers.has(owner_id)) continue;
        seen.set(owner_id, seq);
        wake(owner_id);
      }
    } catch (error) {
      if (!failing) logger.warn('change streams could not read the heads; retrying', { error: String(error) });
      failing = true;
    }
    timer = watchers.size > 0 ? setTimeout(() => void tick(), everyMs).unref() : undefined;
  };

  return {
    watch(owner, wake) {
      let set = watchers.get(owner);
      if (set === undefined) watchers.set(owner, (set = new Set()));
      set.add(wake);
      timer ??= setTimeout(() => void tick(), everyMs).unref();
      return () => {
        set.delete(wake);
        if (set.size > 0 || watchers.get(owner) !== set) return;
        watchers.delete(owner);
        seen.delete(owner);
      };
    },
  };
}
