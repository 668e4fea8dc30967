import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { tasksWebhookEventsV1 } from './0006_webhooks.js';

/**
 * Webhooks, second step.
 * - `task.due` follows its task exactly. When the task is completed or deleted, or its `due_at`
 *   moves, every pending `task.due` of it is cancelled (deleted), a retrying one included (0006
 *   dropped only the ones not yet attempted, and a retrying one went on for up to a day). A plain
 *   edit no longer deletes and rewrites them: the ones not yet attempted get the task as it now
 *   is, under the same event id, so an endpoint that already had its `task.due` never gets a
 *   second one with a new `webhook-id` (0006 rewrote the event for every endpoint).
 * - The webhook worker deletes deliveries that ended (succeeded or failed) more than
 *   WEBHOOK_DELIVERY_RETENTION_DAYS ago; an index finds them without reading the whole log.
 * - `claimed_until`: a worker claims a delivery for the length of one attempt before sending, so
 *   no second attempt of it starts meanwhile (two jobs for it: a redelivery beside a scheduled
 *   retry, or a job pg-boss expired and ran again while its worker was only slow).
 */
export const webhookDueRetentionClaims: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      create or replace function tasks_webhook_events() returns trigger language plpgsql as $$
      declare
        task tasks%rowtype;
        events text[];
        event_type text;
        event_id uuid;
        data jsonb;
        stamp timestamptz := now();
        due_changed boolean := false;
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
        -- Cancelled or rescheduled: every pending task.due of the task goes, tried or not.
        if tg_op <> 'INSERT' and old.due_at is not null
           and (tg_op = 'DELETE' or new.completed or new.due_at is distinct from old.due_at) then
          delete from webhook_deliveries d
            where d.task_id = task.id and d.owner_id = task.owner_id
              and d.event_type = 'task.due' and d.status = 'pending';
        end if;
        due_changed := tg_op <> 'DELETE' and task.due_at is not null and not task.completed
          and (tg_op = 'INSERT' or old.due_at is distinct from new.due_at or old.completed);
        if not exists (select 1 from webhook_endpoints e where e.owner_id = task.owner_id and e.enabled) then
          return null;
        end if;
        data := jsonb_build_object(
          'id', task.id, 'title', task.title, 'description', task.description, 'completed', task.completed,
          'priority', task.priority, 'due_at', tasks_api_iso(task.due_at), 'tags', to_jsonb(task.tags),
          'created_at', tasks_api_iso(task.created_at), 'updated_at', tasks_api_iso(task.updated_at),
          'completed_at', tasks_api_iso(task.completed_at), 'version', task.version);
        if tg_op = 'UPDATE' and not due_changed and task.due_at is not null and not task.completed then
          -- A plain edit: a task.due not yet sent carries the task as it is now, under its own id.
          update webhook_deliveries d set payload = jsonb_set(d.payload, '{data}', data), updated_at = stamp
            where d.task_id = task.id and d.owner_id = task.owner_id
              and d.event_type = 'task.due' and d.status = 'pending' and d.attempts_made = 0;
        end if;
        if due_changed then
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
      $$`.execute(db);
    await sql`create index webhook_deliveries_ended_idx on webhook_deliveries (updated_at) where status <> 'pending'`.execute(
      db,
    );
    await sql`alter table webhook_deliveries add column claimed_until timestamptz(3)`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    await sql`alter table webhook_deliveries drop column claimed_until`.execute(db);
    await sql`drop index webhook_deliveries_ended_idx`.execute(db);
    await sql.raw(`create or replace ${tasksWebhookEventsV1}`).execute(db);
  },
};
