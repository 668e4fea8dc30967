import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { isolateByOwner } from './0004_row_level_security.js';

/** The event types an endpoint can subscribe to (WebhookEventType in the contract). */
export const TASK_EVENT_TYPES = ['task.created', 'task.updated', 'task.completed', 'task.deleted', 'task.due'] as const;

/**
 * Webhooks: a user's endpoints and the deliveries of events to them.
 * - `webhook_endpoints`: where to send which events, the signing secret (and the previous one
 *   while a rotation's grace period lasts), whether it is enabled, and since when every delivery
 *   to it has failed (for automatic disabling).
 * - `webhook_deliveries`: one event for one endpoint, with the exact payload sent (so a retry or
 *   a redelivery sends the same bytes under the same `webhook-id`), its state, and its attempts.
 *   A `pending` delivery that is not `queued` is the outbox: the worker's relay hands it to the
 *   job queue (pg-boss) with its `next_attempt_at` and marks it queued, in one transaction.
 * - A trigger on `tasks` writes the deliveries of task events in the same transaction as the
 *   change (the transactional outbox): a committed change always has its events, a rolled-back
 *   one never. It runs as the writer (RLS applies: the owner's endpoints, the owner's rows). It
 *   also keeps `task.due` deliveries in step with `due_at`: a not-yet-attempted one is dropped
 *   when the task changes and written again (fresh payload, new time) while the task is due and
 *   not completed.
 * Row-level security on both tables, as on tasks.
 */
/** The outbox trigger's function as 0006 created it (0007 replaces it; its `down` brings this back). */
export const tasksWebhookEventsV1 = `function tasks_webhook_events() returns trigger language plpgsql as $$
      declare
        task tasks%rowtype;
        events text[];
        event_type text;
        event_id uuid;
        data jsonb;
        stamp timestamptz := now();
        dropped integer := 0;
      begin
        if tg_op = 'DELETE' then
          task := old;
          events := array['task.deleted'];
        elsif tg_op = 'INSERT' then
          task := new;
          events := array['task.created'];
        else
          task := new;
          events := array['task.updated'];
          if new.completed and not old.completed then
            events := events || 'task.completed'::text;
          end if;
        end if;
        -- A task.due not yet attempted is redone below (or dropped) whenever its task changes.
        if tg_op <> 'INSERT' and old.due_at is not null then
          delete from webhook_deliveries d
            where d.task_id = task.id and d.owner_id = task.owner_id
              and d.event_type = 'task.due' and d.status = 'pending' and d.attempts_made = 0;
          get diagnostics dropped = row_count;
        end if;
        if not exists (select 1 from webhook_endpoints e where e.owner_id = task.owner_id and e.enabled) then
          return null;
        end if;
        data := jsonb_build_object(
          'id', task.id, 'title', task.title, 'description', task.description, 'completed', task.completed,
          'priority', task.priority, 'due_at', tasks_api_iso(task.due_at), 'tags', to_jsonb(task.tags),
          'created_at', tasks_api_iso(task.created_at), 'updated_at', tasks_api_iso(task.updated_at),
          'completed_at', tasks_api_iso(task.completed_at), 'version', task.version);
        if tg_op <> 'DELETE' and task.due_at is not null and not task.completed
           and (tg_op = 'INSERT' or dropped > 0 or old.due_at is distinct from new.due_at or old.completed) then
          events := events || 'task.due'::text;
        end if;
        foreach event_type in array events loop
          event_id := gen_random_uuid();
          insert into webhook_deliveries (owner_id, endpoint_id, event_id, event_type, task_id, payload, next_attempt_at)
            select task.owner_id, e.id, event_id, event_type, task.id,
                   jsonb_build_object('id', event_id, 'type', event_type,
                     'timestamp', tasks_api_iso(case when event_type = 'task.due' then task.due_at else stamp end), 'data', data),
                   case when event_type = 'task.due' then task.due_at else stamp end
              from webhook_endpoints e
             where e.owner_id = task.owner_id and e.enabled and event_type = any (e.events);
        end loop;
        return null;
      end
      $$`;

export const webhooks: Migration = {
  async up(db: Kysely<unknown>) {
    const types = sql.join(TASK_EVENT_TYPES.map((t) => sql.lit(t)));
    await sql`
      create table webhook_endpoints (
        id uuid primary key default gen_random_uuid(),
        owner_id text not null,
        url text not null check (length(url) between 8 and 2048),
        description text check (length(description) <= 500),
        events text[] not null check (cardinality(events) between 1 and 5 and events <@ array[${types}]),
        enabled boolean not null default true,
        disabled_reason text,
        secret text not null,
        previous_secret text,
        previous_secret_expires_at timestamptz,
        failing_since timestamptz,
        created_at timestamptz(3) not null default now(),
        updated_at timestamptz(3) not null default now()
      )`.execute(db);
    await sql`create index webhook_endpoints_owner_idx on webhook_endpoints (owner_id, created_at, id)`.execute(db);
    await sql`
      create table webhook_deliveries (
        id uuid primary key default gen_random_uuid(),
        owner_id text not null,
        endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
        event_id uuid not null,
        event_type text not null,
        task_id uuid,
        payload jsonb not null,
        status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
        attempts jsonb not null default '[]',
        attempts_made integer not null default 0,
        retry_base integer not null default 0,
        next_attempt_at timestamptz(3),
        queued boolean not null default false,
        created_at timestamptz(3) not null default now(),
        updated_at timestamptz(3) not null default now()
      )`.execute(db);
    await sql`create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, created_at desc, id desc)`.execute(
      db,
    );
    await sql`create index webhook_deliveries_outbox_idx on webhook_deliveries (next_attempt_at) where status = 'pending' and not queued`.execute(
      db,
    );
    await sql`create index webhook_deliveries_due_idx on webhook_deliveries (task_id) where event_type = 'task.due' and status = 'pending'`.execute(
      db,
    );
    for (const table of ['webhook_endpoints', 'webhook_deliveries']) await isolateByOwner(db, table);

    await sql`
      create function tasks_api_iso(at timestamptz) returns text language sql stable as $$
        select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
      $$`.execute(db);
    await sql.raw(`create ${tasksWebhookEventsV1}`).execute(db);
    await sql`
      create trigger tasks_webhook_events after insert or update or delete on tasks
        for each row execute function tasks_webhook_events()`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    await sql`drop trigger tasks_webhook_events on tasks`.execute(db);
    await sql`drop function tasks_webhook_events()`.execute(db);
    await sql`drop function tasks_api_iso(timestamptz)`.execute(db);
    await sql`drop table webhook_deliveries`.execute(db);
    await sql`drop table webhook_endpoints`.execute(db);
  },
};
