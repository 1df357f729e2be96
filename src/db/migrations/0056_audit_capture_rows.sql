-- Audit rows for inserts and deletes, written once per statement (issue 20, import speed;
-- docs/audit.md, "How rows are written").
--
-- 0028 and 0040 put a row trigger (`audit_capture`) on each audited table: for every inserted or
-- deleted row, a plpgsql call that built the row's JSON, read the actor, split its arguments, and
-- inserted one audit row by itself (~130 µs a row; the insert of a user alone is ~12 µs). A
-- statement that inserts 500 users (an import batch) paid that 500 times. Now the inserts and the
-- deletes of every table that had such a trigger are captured by a statement trigger with a
-- transition table (`audit_capture_rows`): one call and one INSERT … SELECT per statement, whatever
-- its row count — the same rows as before (entity, verb, target, images without the noise columns,
-- secrets "[redacted]", actor and request of the transaction), in the order the statement wrote
-- them. A statement that changed no row writes none. Updates keep their row triggers (0028/0040:
-- each compares the row's images in its WHEN, and most updates are single rows).
--
-- PostgreSQL allows a transition table only on a trigger of one event: inserts and deletes get a
-- trigger each (`<table>_audit_insert`, `<table>_audit_delete`), with the row trigger's own
-- arguments.

-- The target id: the key columns' values joined with ':' (as audit_capture does).
create function audit_target(j jsonb, keys text[]) returns text language sql immutable set search_path from current as $$
  select case when cardinality(keys) = 1 then j ->> keys[1]
    else (select string_agg(j ->> k, ':' order by i) from unnest(keys) with ordinality as t(k, i)) end
$$;

-- Secret columns that hold a value read "[redacted]" (as audit_capture does; a null stays null).
create function audit_redact(j jsonb, secret text[]) returns jsonb language sql immutable set search_path from current as $$
  select case when cardinality(secret) = 0 then j
    else j || coalesce((select jsonb_object_agg(k, '"[redacted]"'::jsonb) from unnest(secret) as k where j ->> k is not null), '{}'::jsonb) end
$$;

-- Arguments as audit_capture's: entity, key columns, secret columns, noise columns.
create function audit_capture_rows() returns trigger language plpgsql security definer set search_path from current as $$
declare
  entity text := tg_argv[0];
  keys text[] := string_to_array(tg_argv[1], ',');
  secret text[] := coalesce(string_to_array(nullif(tg_argv[2], ''), ','), '{}');
  noise text[] := array['updated_at'] || coalesce(string_to_array(nullif(tg_argv[3], ''), ','), '{}');
  actor jsonb := audit_actor();
  action text := audit_verb(entity, tg_op, null, null); -- an insert's or a delete's verb names the entity only
  request text := nullif(current_setting('tally.request_id', true), '');
begin
  if tg_op = 'INSERT' then
    insert into audit_log (id, actor_kind, actor_id, api_key_id, action, target_table, target_id, before, after, request_id)
    select 'aud_' || replace(gen_random_uuid()::text, '-', ''), actor ->> 'kind', actor ->> 'id', actor ->> 'api_key_id',
           action, tg_table_name, audit_target(r.j, keys), null, audit_redact(r.j, secret) - noise, request
      from (select to_jsonb(n) as j from audit_new n) r;
  elsif tg_op = 'DELETE' then
    insert into audit_log (id, actor_kind, actor_id, api_key_id, action, target_table, target_id, before, after, request_id)
    select 'aud_' || replace(gen_random_uuid()::text, '-', ''), actor ->> 'kind', actor ->> 'id', actor ->> 'api_key_id',
           action, tg_table_name, audit_target(r.j, keys), audit_redact(r.j, secret) - noise, null, request
      from (select to_jsonb(o) as j from audit_old o) r;
  end if;
  return null;
end $$;

-- Every audit_capture row trigger of this schema that fires on inserts and/or deletes (not the
-- update triggers, which carry a WHEN) becomes statement triggers with the same arguments.
do $$
declare
  tr record;
  args text;
begin
  for tr in
    select t.oid, t.tgname, c.relname, t.tgtype, pg_get_triggerdef(t.oid) as def
      from pg_trigger t
      join pg_class c on c.oid = t.tgrelid
     where c.relnamespace = current_schema()::regnamespace
       and t.tgfoid = 'audit_capture'::regproc
       and not t.tgisinternal
       and t.tgtype & 1 = 1          -- for each row
       and t.tgtype & 16 = 0         -- not on update
       and t.tgtype & (4 | 8) <> 0   -- on insert and/or delete
       and t.tgqual is null
  loop
    args := substring(tr.def from 'audit_capture\((.*)\)$');
    if args is null then
      raise exception 'cannot read the arguments of trigger % on %', tr.tgname, tr.relname;
    end if;
    if tr.tgtype & 4 = 4 then
      execute format('create trigger %I after insert on %I referencing new table as audit_new for each statement execute function audit_capture_rows(%s)',
                     tr.relname || '_audit_insert', tr.relname, args);
    end if;
    if tr.tgtype & 8 = 8 then
      execute format('create trigger %I after delete on %I referencing old table as audit_old for each statement execute function audit_capture_rows(%s)',
                     tr.relname || '_audit_delete', tr.relname, args);
    end if;
    execute format('drop trigger %I on %I', tr.tgname, tr.relname);
  end loop;
end $$;

-- Functions are executable by PUBLIC by default; in Tally's schema none is but by name (0001).
revoke execute on function audit_target(jsonb, text[]), audit_redact(jsonb, text[]), audit_capture_rows()
  from public, anon, authenticated;
