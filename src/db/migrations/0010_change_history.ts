import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { isolateByOwner } from './0004_row_level_security.js';

/**
 * The change history the sync feed and the live stream read (DESIGN rule 15).
 * - `change_heads`: per owner, the position of the owner's latest change (`seq`) and the highest
 *   position whose history has been pruned (`pruned_through`: a token below it may have missed a
 *   deletion, so it gets 410).
 * - `task_changes`: per task ever written, its latest change: the position, the version, and for a
 *   deleted task when it went (a tombstone). The task's state is the `tasks` row itself, read in the
 *   same snapshot, so the history stores no copy of it.
 * - A trigger on `tasks` numbers each change in the writer's own transaction by updating the
 *   owner's head row, whose lock it then holds until commit: one owner's changes are numbered in
 *   the order they commit, so a reader that has seen position n can never later find a change
 *   below n become visible (the skip a plain sequence allows, where a transaction that drew 41
 *   commits after one that drew 42). Different owners never wait for each other. No NOTIFY: its
 *   commit takes a lock shared by the whole server and holds it through the commit's WAL flush,
 *   which halved concurrent writes in bench/changes.ts; the streams poll the heads instead
 *   (changes/signals.ts). A transaction that writes
 *   several of one owner's tasks in separate statements must lock the owner's head first
 *   (`select … from change_heads where owner_id = … for update`, as the pruner does): else it can
 *   deadlock with a single write of the same owner. No operation of the API does.
 * - `change_token_keys`: the key that signs feed tokens, made here with the server's strong random
 *   source, so every process of a deployment shares it with no configuration. Only the connecting
 *   role reads it.
 * Row-level security on the heads and the history, as on tasks.
 */
export const changeHistory: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      create table change_heads (
        owner_id text primary key,
        seq bigint not null,
        pruned_through bigint not null default 0
      )`.execute(db);
    await sql`
      create table task_changes (
        owner_id text not null,
        task_id uuid not null,
        seq bigint not null,
        version integer not null,
        deleted_at timestamptz(3),
        primary key (owner_id, task_id)
      )`.execute(db);
    await sql`create unique index task_changes_feed_idx on task_changes (owner_id, seq)`.execute(db);
    await sql`create index task_changes_tombstones_idx on task_changes (deleted_at) where deleted_at is not null`.execute(
      db,
    );
    for (const table of ['change_heads', 'task_changes']) await isolateByOwner(db, table);
    await sql`
      create table change_token_keys (
        id integer primary key check (id = 1),
        key bytea not null check (length(key) = 32)
      )`.execute(db);
    await sql`
      insert into change_token_keys (id, key)
        values (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))`.execute(db);

    await sql`
      create function tasks_record_change() returns trigger language plpgsql as $$
      declare
        task tasks%rowtype;
        position bigint;
      begin
        if tg_op = 'DELETE' then
          task := old;
        else
          task := new;
        end if;
        if tg_op = 'UPDATE' and old is not distinct from new then
          return null;
        end if;
        insert into change_heads as h (owner_id, seq) values (task.owner_id, 1)
          on conflict (owner_id) do update set seq = h.seq + 1
          returning h.seq into position;
        insert into task_changes as c (owner_id, task_id, seq, version, deleted_at)
          values (task.owner_id, task.id, position, task.version, case when tg_op = 'DELETE' then now() end)
          on conflict (owner_id, task_id) do update
            set seq = excluded.seq, version = excluded.version, deleted_at = excluded.deleted_at;
        return null;
      end
      $$`.execute(db);
    await sql`
      create trigger tasks_record_change after insert or update or delete on tasks
        for each row execute function tasks_record_change()`.execute(db);
    // Tasks that exist already get their place in the feed, as if each had just been created.
    await sql`
      insert into change_heads (owner_id, seq)
        select owner_id, count(*) from tasks group by owner_id`.execute(db);
    await sql`
      insert into task_changes (owner_id, task_id, seq, version)
        select owner_id, id, row_number() over (partition by owner_id order by created_at, id), version from tasks`.execute(
      db,
    );
  },
  async down(db: Kysely<unknown>) {
    await sql`drop trigger tasks_record_change on tasks`.execute(db);
    await sql`drop function tasks_record_change()`.execute(db);
    await sql`drop table change_token_keys`.execute(db);
    await sql`drop table task_changes`.execute(db);
    await sql`drop table change_heads`.execute(db);
  },
};
