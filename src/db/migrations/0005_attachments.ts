import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { isolateByOwner } from './0004_row_level_security.js';

const OWNER_TABLES = ['attachment_blobs', 'attachment_chunks', 'attachments', 'attachment_usage'];

/**
 * Attachments: files on tasks.
 * - `attachment_blobs`: one per distinct file of an owner (content-addressed by sha256 once
 *   stored), with how many attachments point at it. A blob is `uploading` while its bytes arrive
 *   (a row first, so a crash half-way leaves something the sweep can find), `stored` when
 *   complete, `released` when its last attachment went and a store other than PostgreSQL still
 *   holds its bytes (the sweep removes them, then the row).
 * - `attachment_chunks`: the bytes of blobs kept in PostgreSQL, in pieces keyed by the offset of
 *   their first byte, so a range is read without reading what is before it. Stored uncompressed
 *   (`storage external`): files are mostly compressed already, and pglz would only burn CPU.
 * - `attachments`: what the API shows; deleted with its task.
 * - `attachment_usage`: bytes an owner's stored blobs take, against the quota; kept by the
 *   finishing upload and by the trigger below, so it cannot drift from the blobs.
 * Row-level security on all four, as on tasks.
 */
export const attachments: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      create table attachment_blobs (
        id uuid primary key,
        owner_id text not null,
        backend text not null check (backend in ('postgres', 's3')),
        state text not null check (state in ('uploading', 'stored', 'released')),
        sha256 text check (sha256 ~ '^[0-9a-f]{64}$'),
        size bigint not null default 0 check (size >= 0),
        ref_count integer not null default 0 check (ref_count >= 0),
        created_at timestamptz not null default now(),
        check (state <> 'stored' or sha256 is not null)
      )`.execute(db);
    await sql`create unique index attachment_blobs_content_idx on attachment_blobs (owner_id, sha256) where state = 'stored'`.execute(
      db,
    );
    await sql`create index attachment_blobs_unfinished_idx on attachment_blobs (created_at) where state <> 'stored'`.execute(
      db,
    );
    await sql`
      create table attachment_chunks (
        blob_id uuid not null references attachment_blobs (id) on delete cascade,
        start_offset bigint not null check (start_offset >= 0),
        owner_id text not null,
        data bytea not null,
        primary key (blob_id, start_offset)
      )`.execute(db);
    await sql`alter table attachment_chunks alter column data set storage external`.execute(db);
    await sql`
      create table attachments (
        id uuid primary key default gen_random_uuid(),
        owner_id text not null,
        task_id uuid not null references tasks (id) on delete cascade,
        blob_id uuid not null references attachment_blobs (id),
        filename text not null check (length(filename) between 1 and 255),
        content_type text not null,
        size bigint not null check (size >= 0),
        sha256 text not null,
        created_at timestamptz(3) not null default now()
      )`.execute(db);
    await sql`create index attachments_task_idx on attachments (task_id, created_at, id)`.execute(db);
    await sql`create index attachments_blob_idx on attachments (blob_id)`.execute(db);
    await sql`
      create table attachment_usage (
        owner_id text primary key,
        bytes bigint not null default 0 check (bytes >= 0)
      )`.execute(db);
    // The last attachment of a blob gone (deleted itself, or with its task): the blob's space is
    // given back, and its bytes removed with it (PostgreSQL) or marked for the sweep (elsewhere).
    await sql`
      create function attachments_release_blob() returns trigger language plpgsql as $$
      declare
        released attachment_blobs%rowtype;
      begin
        update attachment_blobs set ref_count = ref_count - 1 where id = old.blob_id returning * into released;
        if found and released.ref_count = 0 then
          update attachment_usage set bytes = bytes - released.size where owner_id = released.owner_id;
          if released.backend = 'postgres' then
            delete from attachment_blobs where id = released.id;
          else
            update attachment_blobs set state = 'released' where id = released.id;
          end if;
        end if;
        return null;
      end $$`.execute(db);
    await sql`create trigger attachments_release_blob after delete on attachments for each row execute function attachments_release_blob()`.execute(
      db,
    );
    for (const table of OWNER_TABLES) await isolateByOwner(db, table);
  },
  async down(db: Kysely<unknown>) {
    await sql`drop table attachments`.execute(db);
    await sql`drop function attachments_release_blob()`.execute(db);
    await sql`drop table attachment_chunks`.execute(db);
    await sql`drop table attachment_blobs`.execute(db);
    await sql`drop table attachment_usage`.execute(db);
  },
};
