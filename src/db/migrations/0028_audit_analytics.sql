-- Audit log and analytics events (issue 19, observability part B; docs/audit.md).
--
-- audit_log: every money and admin action — who (actor kind, id, API key), what (a closed list of
-- action names, the target table and id), before/after (secrets redacted), the request id, when.
-- Written in the same transaction as the change it records:
--   * admin and money-configuration tables: an AFTER row trigger (`audit_capture`) on each, which
--     reads who and which request from the transaction's settings (`tally.actor`,
--     `tally.request_id`, set by the route wrapper; `request.jwt.claims` for end users);
--   * ledger movements (grants, adjustments, refunds, clawbacks): the ledger's batch writes one
--     audit row per movement naming the entry (credit_ledger is the record of the money itself;
--     debits, captures and usage — the hot path — get none).
-- Nobody edits it: UPDATE, DELETE and TRUNCATE are refused by triggers, for the owner too. Each row
-- is sealed at commit into a hash chain (seq, prev_hash, hash), so a superuser who disables the
-- triggers and rewrites or removes rows breaks the chain, which `tally audit verify` and
-- `tally reconcile` check.

create table audit_log (
  id            text primary key,                      -- aud_<32 hex>
  seq           bigint unique,                         -- chain position, set when sealed (commit)
  at            timestamptz not null default now(),
  actor_kind    text not null check (actor_kind in ('service', 'user', 'anon', 'system', 'provider')),
  actor_id      text check (length(actor_id) <= 255),
  api_key_id    text check (length(api_key_id) <= 255),
  action        text not null check (action in (
    'user.created', 'user.updated', 'user.deactivated', 'user.reactivated', 'user.role_changed', 'user.deleted',
    'api_key.created', 'api_key.updated', 'api_key.revoked', 'api_key.deleted',
    'workspace.created', 'workspace.updated', 'workspace.deleted',
    'workspace_member.added', 'workspace_member.role_changed', 'workspace_member.updated', 'workspace_member.removed',
    'env_var.set', 'env_var.rotated', 'env_var.updated', 'env_var.deleted',
    'service_token.set', 'service_token.rotated', 'service_token.updated', 'service_token.deleted',
    'upstream.created', 'upstream.updated', 'upstream.credentials_rotated', 'upstream.deleted',
    'bucket.created', 'bucket.updated', 'bucket.deleted',
    'webhook_endpoint.created', 'webhook_endpoint.updated', 'webhook_endpoint.secret_rotated', 'webhook_endpoint.deleted',
    'plan.created', 'plan.updated', 'plan.deleted',
    'plan_allowance.created', 'plan_allowance.updated', 'plan_allowance.deleted',
    'plan_price.created', 'plan_price.updated', 'plan_price.deleted',
    'cost_model.created', 'cost_model.updated', 'cost_model.deleted',
    'credit_package.created', 'credit_package.updated', 'credit_package.deleted',
    'subscription.created', 'subscription.plan_changed', 'subscription.status_changed', 'subscription.updated', 'subscription.deleted',
    'budget_guard.created', 'budget_guard.updated', 'budget_guard.deleted',
    'spend_cap.set', 'spend_cap.updated', 'spend_cap.removed',
    'payment.created', 'payment.status_changed', 'payment.updated', 'payment.deleted',
    'credits.granted', 'credits.adjusted', 'credits.refunded', 'credits.clawed_back'
  )),
  target_table  text not null check (length(target_table) <= 63),
  target_id     text not null check (length(target_id) <= 512),
  before        jsonb,
  after         jsonb,
  request_id    text check (length(request_id) <= 255),
  prev_hash     text,
  hash          text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create index audit_log_at_idx on audit_log (at desc, seq desc);
create index audit_log_target_idx on audit_log (target_table, target_id, seq desc);
create index audit_log_actor_idx on audit_log (actor_id, seq desc) where actor_id is not null;
create index audit_log_request_idx on audit_log (request_id) where request_id is not null;
create index audit_log_action_idx on audit_log (action, seq desc);
alter table audit_log enable row level security;
-- No policy and no grant: end users and anon see nothing; the service reads it through GET /v1/audit.

-- The chain's head: one row, the last sealed position and hash. Sealing locks it, so the chain's
-- order is the order audited transactions commit in (the lock is taken at commit, held briefly).
create table audit_chain (
  id          boolean primary key default true check (id),
  last_seq    bigint not null default 0,
  last_hash   text not null default '',
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
insert into audit_chain (id) values (true);
create trigger audit_chain_updated_at before update on audit_chain for each row execute function set_updated_at();
alter table audit_chain enable row level security;

-- What a row's hash covers: its position, the previous hash and every fact, as canonical text
-- (jsonb prints keys in one order; the time in UTC microseconds, whatever the session's TimeZone).
create function audit_log_digest(a audit_log) returns text language sql stable set search_path from current as $$
  select encode(sha256(convert_to(coalesce(a.prev_hash, '') || E'\n' || jsonb_build_object(
    'seq', a.seq, 'id', a.id,
    'at', to_char(a.at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'actor_kind', a.actor_kind, 'actor_id', a.actor_id, 'api_key_id', a.api_key_id,
    'action', a.action, 'target_table', a.target_table, 'target_id', a.target_id,
    'before', a.before, 'after', a.after, 'request_id', a.request_id)::text, 'UTF8')), 'hex')
$$;

-- Append-only: no row changes, for anyone (the owner and a superuser too, while the triggers are on).
-- The one update allowed is the seal itself: from inside the sealing trigger (depth > 1), on a
-- row not sealed yet, filling only seq/prev_hash/hash.
create function audit_log_immutable() returns trigger language plpgsql set search_path from current as $$
begin
  if tg_op = 'UPDATE' and pg_trigger_depth() > 1 and old.hash is null and old.seq is null
     and (to_jsonb(new) - '{seq,prev_hash,hash}'::text[]) = (to_jsonb(old) - '{seq,prev_hash,hash}'::text[]) then
    return new;
  end if;
  raise exception 'audit_log is append-only: % refused', lower(tg_op) using errcode = '42501';
end $$;
create trigger audit_log_immutable before update or delete on audit_log
  for each row execute function audit_log_immutable();
create trigger audit_log_no_truncate before truncate on audit_log
  for each statement execute function audit_log_immutable();

create function audit_chain_guard() returns trigger language plpgsql set search_path from current as $$
begin
  if tg_op = 'UPDATE' and pg_trigger_depth() > 1 and new.last_seq = old.last_seq + 1 then
    return new;
  end if;
  raise exception 'audit_chain moves only by sealing audit rows' using errcode = '42501';
end $$;
create trigger audit_chain_guard before update or delete on audit_chain
  for each row execute function audit_chain_guard();
create trigger audit_chain_no_truncate before truncate on audit_chain
  for each statement execute function audit_chain_guard();

-- Sealing at commit (a deferred constraint trigger): the chain's head is locked last, just before
-- the transaction commits, so audited transactions queue on it only for their commit, and a
-- rolled-back transaction neither leaves a row nor a gap in the chain.
create function audit_log_seal() returns trigger language plpgsql security definer set search_path from current as $$
declare
  head audit_chain;
  row audit_log;
begin
  select * into head from audit_chain where id for update;
  select * into row from audit_log where id = new.id;
  row.seq := head.last_seq + 1;
  row.prev_hash := head.last_hash;
  row.hash := audit_log_digest(row);
  update audit_log set seq = row.seq, prev_hash = row.prev_hash, hash = row.hash where id = new.id;
  update audit_chain set last_seq = row.seq, last_hash = row.hash where id;
  return null;
end $$;
create constraint trigger audit_log_seal after insert on audit_log
  deferrable initially deferred for each row execute function audit_log_seal();

-- Who is acting, from the transaction's settings: `tally.actor` (JSON {kind, id, api_key_id},
-- set by the route wrapper and by Tally's own callers), else an end user's claims, else 'system'.
create function audit_actor() returns jsonb language sql stable set search_path from current as $$
  select coalesce(
    nullif(current_setting('tally.actor', true), '')::jsonb,
    case when auth.uid() is not null
      then jsonb_build_object('kind', 'user', 'id', auth.uid(), 'api_key_id', auth.jwt() ->> 'api_key_id') end,
    '{"kind": "system"}'::jsonb)
$$;

-- The action's verb: created/updated/deleted, or a more telling name where one column's change is
-- the point (a key revoked, a user deactivated, a secret rotated, a plan changed).
create function audit_verb(entity text, op text, o jsonb, n jsonb) returns text language plpgsql immutable as $$
begin
  if op = 'INSERT' then
    return entity || case entity when 'workspace_member' then '.added' when 'env_var' then '.set'
      when 'service_token' then '.set' when 'spend_cap' then '.set' else '.created' end;
  elsif op = 'DELETE' then
    return entity || case entity when 'workspace_member' then '.removed' when 'spend_cap' then '.removed' else '.deleted' end;
  end if;
  if entity = 'api_key' and o ->> 'revoked_at' is null and n ->> 'revoked_at' is not null then return 'api_key.revoked';
  elsif entity = 'user' and (o ->> 'is_active')::boolean and not (n ->> 'is_active')::boolean then return 'user.deactivated';
  elsif entity = 'user' and not (o ->> 'is_active')::boolean and (n ->> 'is_active')::boolean then return 'user.reactivated';
  elsif entity = 'user' and o -> 'role' is distinct from n -> 'role' then return 'user.role_changed';
  elsif entity = 'workspace_member' and o -> 'role' is distinct from n -> 'role' then return 'workspace_member.role_changed';
  elsif entity = 'env_var' and o -> 'value_enc' is distinct from n -> 'value_enc' then return 'env_var.rotated';
  elsif entity = 'service_token' and o -> 'token_enc' is distinct from n -> 'token_enc' then return 'service_token.rotated';
  elsif entity = 'upstream' and o -> 'credentials_enc' is distinct from n -> 'credentials_enc' then return 'upstream.credentials_rotated';
  elsif entity = 'webhook_endpoint' and o -> 'secret_enc' is distinct from n -> 'secret_enc' then return 'webhook_endpoint.secret_rotated';
  elsif entity = 'subscription' and o -> 'plan_id' is distinct from n -> 'plan_id' then return 'subscription.plan_changed';
  elsif entity = 'subscription' and o -> 'status' is distinct from n -> 'status' then return 'subscription.status_changed';
  elsif entity = 'payment' and o -> 'status' is distinct from n -> 'status' then return 'payment.status_changed';
  end if;
  return entity || '.updated';
end $$;

-- The row trigger on each audited table. Arguments: the entity name, the key columns (comma
-- separated; the target id joins their values with ':'), the columns never copied (secrets:
-- ciphertexts, hashes, hints — a changed one shows as "[redacted]" in both images, and the action
-- names the rotation), and the columns whose changes alone are not worth a row (counters, health,
-- last-used stamps: they also stay out of the images so the row shows what an admin changed).
-- security definer: end users' requests write through it, though they hold no grant on audit_log.
create function audit_capture() returns trigger language plpgsql security definer set search_path from current as $$
declare
  entity text := tg_argv[0];
  keys text[] := string_to_array(tg_argv[1], ',');
  secret text[] := coalesce(string_to_array(nullif(tg_argv[2], ''), ','), '{}');
  noise text[] := array['updated_at'] || coalesce(string_to_array(nullif(tg_argv[3], ''), ','), '{}');
  o jsonb := case when tg_op <> 'INSERT' then to_jsonb(old) end;
  n jsonb := case when tg_op <> 'DELETE' then to_jsonb(new) end;
  actor jsonb := audit_actor();
  target text;
  action text;
  k text;
begin
  if tg_op = 'UPDATE' and (o - noise) = (n - noise) then
    return null;
  end if;
  select string_agg(coalesce(n, o) ->> key, ':' order by ord) into target from unnest(keys) with ordinality as t(key, ord);
  action := audit_verb(entity, tg_op, o, n); -- before redaction: a rotation is a change of a secret column
  foreach k in array secret loop
    if o ? k and o ->> k is not null then o := jsonb_set(o, array[k], '"[redacted]"'); end if;
    if n ? k and n ->> k is not null then n := jsonb_set(n, array[k], '"[redacted]"'); end if;
  end loop;
  insert into audit_log (id, actor_kind, actor_id, api_key_id, action, target_table, target_id, before, after, request_id)
  values ('aud_' || replace(gen_random_uuid()::text, '-', ''), actor ->> 'kind', actor ->> 'id', actor ->> 'api_key_id',
          action, tg_table_name, target, o - noise, n - noise,
          nullif(current_setting('tally.request_id', true), ''));
  return null;
end $$;

do $$
declare
  spec text[];
begin
  -- table, entity, key columns, secret columns, noise columns
  foreach spec slice 1 in array array[
    array['users', 'user', 'id', 'password_hash', 'last_login_at'],
    array['api_keys', 'api_key', 'id', 'key_hash', 'last_used_at,request_count,credits_used'],
    array['workspaces', 'workspace', 'id', '', ''],
    array['workspace_members', 'workspace_member', 'workspace_id,user_id', '', ''],
    array['env_vars', 'env_var', 'id', 'value_enc,value_hint', ''],
    array['service_tokens', 'service_token', 'id', 'token_enc,token_hint', 'last_used_at'],
    array['gateway_upstreams', 'upstream', 'id', 'credentials_enc,credentials_hint',
          'consecutive_failures,cooldown_until,error_count,last_error,last_error_at,last_success_at,state,success_count'],
    array['storage_buckets', 'bucket', 'id', '', ''],
    array['webhook_endpoints', 'webhook_endpoint', 'id', 'secret_enc,previous_secret_enc', 'failing_since'],
    array['plans', 'plan', 'id', '', ''],
    array['plan_allowances', 'plan_allowance', 'plan_id,class,window', '', ''],
    array['plan_prices', 'plan_price', 'provider,provider_price_id', '', ''],
    array['cost_models', 'cost_model', 'metric', '', ''],
    array['credit_packages', 'credit_package', 'id', '', ''],
    array['subscriptions', 'subscription', 'id', '', 'cycles_due_at,trial_ending_told_at'],
    array['budget_guards', 'budget_guard', 'id', '', 'current_window_spend,window_start,window_end,alerted_80_at,alerted_100_at'],
    array['workspace_spend_caps', 'spend_cap', 'workspace_id,user_id', '', ''],
    array['payments', 'payment', 'id', 'raw_payload', '']
  ] loop
    execute format('create trigger %I after insert or delete on %I for each row execute function audit_capture(%L, %L, %L, %L)',
                   spec[1] || '_audit', spec[1], spec[2], spec[3], spec[4], spec[5]);
    -- Updates that only move counters or stamps are filtered in the trigger's WHEN, before any
    -- function call (api_keys count every use, budget guards every usage event).
    execute format('create trigger %I after update on %I for each row when ((to_jsonb(old) - %L::text[]) is distinct from (to_jsonb(new) - %L::text[])) '
                   'execute function audit_capture(%L, %L, %L, %L)',
                   spec[1] || '_audit_update', spec[1], '{' || concat_ws(',', 'updated_at', nullif(spec[5], '')) || '}',
                   '{' || concat_ws(',', 'updated_at', nullif(spec[5], '')) || '}',
                   spec[2], spec[3], spec[4], spec[5]);
  end loop;
end $$;

-- ---------------------------------------------------------------------------------------------
-- analytics_events: product events an app sends (POST /v1/analytics/events). Idempotent by the
-- client's id per caller (`source`: 'service' or 'user:<id>'): a replayed batch inserts nothing
-- twice. A user's events are about that user only (RLS repeats it). Retention: 400 days by default
-- (TALLY_ANALYTICS_RETENTION_DAYS), by created_at.
-- ---------------------------------------------------------------------------------------------
create table analytics_events (
  id            text primary key,                                       -- ane_<ulid>
  source        text not null check (source = 'service' or source ~ '^user:'),
  client_id     text not null check (length(client_id) between 1 and 128),
  event         text not null check (length(event) between 1 and 200),
  user_id       text references users (id) on delete set null,
  anonymous_id  text check (length(anonymous_id) between 1 and 200),
  session_id    text check (length(session_id) between 1 and 200),
  properties    jsonb not null default '{}'::jsonb check (jsonb_typeof(properties) = 'object' and octet_length(properties::text) <= 16384),
  context       jsonb not null default '{}'::jsonb check (jsonb_typeof(context) = 'object' and octet_length(context::text) <= 8192),
  occurred_at   timestamptz not null,
  api_key_id    text,
  request_id    text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  unique (source, client_id)
);
create index analytics_events_created_idx on analytics_events (created_at desc, id desc);
create index analytics_events_event_idx on analytics_events (event, occurred_at);
create index analytics_events_user_idx on analytics_events (user_id, created_at desc) where user_id is not null;
create trigger analytics_events_updated_at before update on analytics_events for each row execute function set_updated_at();
alter table analytics_events enable row level security;
-- End users insert their own events (the service layer checks it first) and may read them back.
create policy analytics_events_select on analytics_events for select to authenticated using (user_id = auth.uid());
create policy analytics_events_insert on analytics_events for insert to authenticated
  with check (user_id = auth.uid() and source = 'user:' || auth.uid());
grant select on analytics_events to authenticated;
grant insert (id, source, client_id, event, user_id, anonymous_id, session_id, properties, context, occurred_at, api_key_id, request_id)
  on analytics_events to authenticated;

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
