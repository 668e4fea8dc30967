import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Listing at scale and safe retries:
 * - `version` counts changes; the task's ETag is derived from it, and `If-Match` compares it in
 *   the UPDATE/DELETE itself, so a concurrent change can never slip between check and write.
 * - `priority_rank` orders priorities by meaning (low 1 < medium 2 < high 3), not alphabetically.
 * - One index per sort, each led by `owner_id`, so every list query is a range scan of the
 *   caller's rows in the order asked for, whatever the table's size; filters (status included)
 *   are applied along that scan. Tasks without a due date sort last in both directions:
 *   ascending by `coalesce(due_at, +infinity)`, descending by `coalesce(due_at, -infinity)`.
 *   The (owner, completed, created_at) index of 0001 goes: with it the planner fetched a status's
 *   rows and sorted them for every other sort.
 * - `idempotency_keys`: one row per (owner, Idempotency-Key) with the request's hash and, once
 *   done, the response to replay; in PostgreSQL, so every process sees the same keys.
 */
export const listShapesVersionsIdempotency: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`alter table tasks add column version integer not null default 1`.execute(db);
    await sql`
      alter table tasks add column priority_rank smallint not null
        generated always as (case priority when 'low' then 1 when 'medium' then 2 else 3 end) stored`.execute(db);
    await sql`create index tasks_owner_due_asc_idx on tasks (owner_id, coalesce(due_at, 'infinity'::timestamptz), id)`.execute(
      db,
    );
    await sql`create index tasks_owner_due_desc_idx on tasks (owner_id, coalesce(due_at, '-infinity'::timestamptz), id)`.execute(
      db,
    );
    await sql`create index tasks_owner_priority_idx on tasks (owner_id, priority_rank, id)`.execute(db);
    await sql`create index tasks_owner_title_idx on tasks (owner_id, lower(title), id)`.execute(db);
    await sql`drop index tasks_owner_completed_created_idx`.execute(db);

    await sql`
      create table idempotency_keys (
        owner_id text not null,
        key text not null check (length(key) between 1 and 255),
        request_hash text not null,
        state text not null check (state in ('in_flight', 'done')),
        response_status smallint,
        response_body text,
        response_headers text,
        created_at timestamptz not null default now(),
        primary key (owner_id, key)
      )`.execute(db);
    await sql`create index idempotency_keys_created_idx on idempotency_keys (created_at)`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    await sql`drop table idempotency_keys`.execute(db);
    await sql`create index tasks_owner_completed_created_idx on tasks (owner_id, completed, created_at desc, id desc)`.execute(
      db,
    );
    await sql`drop index tasks_owner_title_idx, tasks_owner_priority_idx, tasks_owner_due_desc_idx, tasks_owner_due_asc_idx`.execute(
      db,
    );
    await sql`alter table tasks drop column priority_rank, drop column version`.execute(db);
  },
};
