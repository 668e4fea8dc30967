import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import type { Logger } from '../logger.js';

/** How many tombstones one statement deletes, and how often the pruner runs. */
const BATCH = 5000;
const EVERY_MS = 3600_000;

/**
 * One batch of tombstones older than `retentionDays` deleted, and each owner's pruning mark raised
 * to the highest position deleted (a token below it gets 410); how many. Runs as the connecting
 * role (the maintenance policy), in one transaction that locks the owners' heads first, in owner
 * order: the order the tasks trigger takes them in, so a pruner never deadlocks with a writer or
 * with another process's pruner. A live task's change is never pruned: it is the task's state.
 */
export async function pruneChanges(db: Kysely<DB>, retentionDays: number): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { rows: owners } = await sql<{ owner_id: string }>`
      select owner_id from change_heads
       where owner_id in (
         select owner_id from task_changes
          where deleted_at < now() - make_interval(days => ${retentionDays})
          limit ${BATCH})
       order by owner_id
         for update`.execute(trx);
    if (owners.length === 0) return 0;
    const { rows } = await sql<{ count: string | number }>`
      with gone as (
        delete from task_changes c
         where (c.owner_id, c.task_id) in (
           select owner_id, task_id from task_changes
            where deleted_at < now() - make_interval(days => ${retentionDays})
              and owner_id = any(${owners.map((o) => o.owner_id)}::text[])
            limit ${BATCH})
        returning c.owner_id, c.seq),
      marked as (
        update change_heads h set pruned_through = greatest(h.pruned_through, g.seq)
          from (select owner_id, max(seq) as seq from gone group by owner_id) g
         where h.owner_id = g.owner_id)
      select count(*) from gone`.execute(trx);
    return Number(rows[0]?.count ?? 0);
  });
}

/** Prunes the change history hourly (and once soon after start), batch after batch; `stop` ends it. */
export function changePruner(db: Kysely<DB>, retentionDays: number, logger: Logger): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = async () => {
    let deleted = 0;
    try {
      for (let batch = BATCH; batch === BATCH && !stopped; deleted += batch)
        batch = await pruneChanges(db, retentionDays);
      if (deleted > 0)
        logger.info('change history past its retention pruned', { deleted, retention_days: retentionDays });
    } catch (error) {
      if (!stopped) logger.warn('change history prune failed; it runs again in an hour', { error: String(error) });
    }
    if (!stopped) (timer = setTimeout(() => void run(), EVERY_MS)).unref();
  };
  (timer = setTimeout(() => void run(), 60_000)).unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
