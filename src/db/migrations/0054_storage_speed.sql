-- Storage on its hot path (issue 15, "Proofs and speed"; docs/storage.md, "Speed").
--
-- 1. storage_usage_pending. Every upload added its size to its owner's storage_usage row in the
--    upload's own transaction, and so held that row's lock through its commit (the WAL flush): one
--    owner's concurrent uploads committed one after another (8 connections of one user: p99 56 ms
--    for 1 KB). In a bucket without a per-owner quota nothing is decided on used_bytes at upload
--    time, so the trigger now appends the change here instead (a row of its own: no lock shared
--    with anyone) and storage_usage_fold() moves what is pending into storage_usage — run by the
--    sweeper, and by every reader of used_bytes before it reads (the usage route, metering), so
--    readers see exactly what they saw before. A bucket with a quota still updates storage_usage
--    under its row lock, where the quota is decided (docs/storage.md, "Quotas").
-- 2. storage_object_get / storage_object_put: a user's read of one object, or the write of an
--    uploaded object's row, as ONE statement outside any transaction — the role and the claims set
--    inside the function, so row-level security applies exactly as in a request transaction,
--    without its begin, set_config and commit round trips.

create table storage_usage_pending (
  id          bigint generated always as identity primary key,
  bucket_id   text not null references storage_buckets (id) on delete cascade,
  owner_id    text not null,
  bytes       bigint not null,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index storage_usage_pending_owner_idx on storage_usage_pending (bucket_id, owner_id);
create trigger storage_usage_pending_updated_at before update on storage_usage_pending for each row execute function set_updated_at();
alter table storage_usage_pending enable row level security;

-- Moves the pending changes (of one bucket, one owner, or all: null = any) into storage_usage. The
-- usage rows are locked in key order, so two folds (two processes' sweepers) never deadlock. It
-- waits for pending rows another fold is moving (a reader must see them): a quota bucket has pending
-- rows only in the moment a quota is set, so a fold inside a transaction already holding that
-- owner's usage row rarely waits at all; were it to meet a sweeper in a cycle, PostgreSQL's deadlock
-- detection ends one of them (the sweeper folds again on its next pass).
create function storage_usage_fold(p_bucket text, p_owner text) returns void
language plpgsql security definer set search_path from current as $$
begin
  with moved as (
    delete from storage_usage_pending
     where (p_bucket is null or bucket_id = p_bucket) and (p_owner is null or owner_id = p_owner)
    returning bucket_id, owner_id, bytes),
  sums as (select bucket_id, owner_id, sum(bytes)::bigint as bytes from moved group by bucket_id, owner_id),
  locked as (
    select u.bucket_id, u.owner_id from storage_usage u
     where (u.bucket_id, u.owner_id) in (select bucket_id, owner_id from sums)
     order by u.bucket_id, u.owner_id for update),
  updated as (
    update storage_usage u set used_bytes = u.used_bytes + s.bytes
      from sums s
     where u.bucket_id = s.bucket_id and u.owner_id = s.owner_id
       and (u.bucket_id, u.owner_id) in (select bucket_id, owner_id from locked)
    returning u.bucket_id, u.owner_id)
  -- An owner's first bytes: their row does not exist yet (a sum that is negative always has one).
  insert into storage_usage (bucket_id, owner_id, used_bytes)
  select s.bucket_id, s.owner_id, s.bytes from sums s
   where not exists (select 1 from updated x where x.bucket_id = s.bucket_id and x.owner_id = s.owner_id)
  on conflict (bucket_id, owner_id) do update set used_bytes = storage_usage.used_bytes + excluded.used_bytes;
end $$;

-- One change of an owner's bytes used: at once under the row lock where the bucket has a quota
-- (after folding whatever was pending for them), else appended to storage_usage_pending.
create function storage_usage_move(p_bucket text, p_owner text, p_bytes bigint) returns void
language plpgsql security definer set search_path from current as $$
begin
  if exists (select 1 from storage_buckets b where b.id = p_bucket and b.user_quota_bytes is not null) then
    perform storage_usage_fold(p_bucket, p_owner);
    if p_bytes < 0 then
      update storage_usage set used_bytes = used_bytes + p_bytes where bucket_id = p_bucket and owner_id = p_owner;
    else
      insert into storage_usage (bucket_id, owner_id, used_bytes) values (p_bucket, p_owner, p_bytes)
      on conflict (bucket_id, owner_id) do update set used_bytes = storage_usage.used_bytes + excluded.used_bytes;
    end if;
  else
    insert into storage_usage_pending (bucket_id, owner_id, bytes) values (p_bucket, p_owner, p_bytes);
  end if;
end $$;

-- 0018's trigger, with the bytes moved by storage_usage_move (the outbox part is unchanged).
create or replace function storage_objects_account() returns trigger
language plpgsql security definer set search_path from current as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    if old.owner_id is not null then
      perform storage_usage_move(old.bucket_id, old.owner_id, -old.size);
    end if;
    if tg_op = 'DELETE' or new.storage_key <> old.storage_key then
      insert into storage_deletions (storage_key) values (old.storage_key);
    end if;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    if new.owner_id is not null then
      perform storage_usage_move(new.bucket_id, new.owner_id, new.size);
    end if;
    return new;
  end if;
  return old;
end $$;

-- The object at (bucket, path) as the user named by `caller_claims` sees it: the role and claims
-- are set for the one query, as a request transaction sets them, so storage_objects' policies
-- decide; the caller's own role and claims are put back before it returns. Tally calls it
-- outside any transaction (the statement is its own).
create function storage_object_get(caller_claims text, p_bucket text, p_path text) returns setof storage_objects
language plpgsql volatile set search_path from current as $$
declare
  prior_role text := current_setting('role');
  prior_claims text := coalesce(current_setting('request.jwt.claims', true), '');
begin
  perform set_config('role', 'authenticated', true), set_config('request.jwt.claims', caller_claims, true);
  return query select o.* from storage_objects o where o.bucket_id = p_bucket and o.path = p_path;
  perform set_config('role', prior_role, true), set_config('request.jwt.claims', prior_claims, true);
end $$;

-- An uploaded object's row, written once its bytes are stored: inserted, or (p_upsert) replacing
-- the row at the path — as the user named by `caller_claims` (null: the service), so the insert
-- and update policies decide — and the upload's quota reservation (if any) released, all in one
-- statement's transaction. No row returned: an object exists at the path and p_upsert is false.
create function storage_object_put(
  caller_claims text, p_id text, p_bucket text, p_path text, p_owner text, p_uploaded_by text, p_key text, p_size bigint,
  p_declared text, p_sniffed text, p_sha256 text, p_metadata jsonb, p_upsert boolean, p_reservation text
) returns setof storage_objects
language plpgsql volatile set search_path from current as $$
declare
  prior_role text := current_setting('role');
  prior_claims text := coalesce(current_setting('request.jwt.claims', true), '');
  existing text;
  written storage_objects;
begin
  if caller_claims is not null then
    perform set_config('role', 'authenticated', true), set_config('request.jwt.claims', caller_claims, true);
  end if;
  select o.id into existing from storage_objects o where o.bucket_id = p_bucket and o.path = p_path for update;
  if existing is not null and not p_upsert then
    perform set_config('role', prior_role, true), set_config('request.jwt.claims', prior_claims, true);
    return;
  end if;
  if existing is not null then
    update storage_objects set uploaded_by = p_uploaded_by, storage_key = p_key, size = p_size, declared_type = p_declared,
           sniffed_type = p_sniffed, sha256 = p_sha256, metadata = p_metadata
     where id = existing returning * into written;
  else
    insert into storage_objects (id, bucket_id, path, owner_id, uploaded_by, storage_key, size, declared_type, sniffed_type, sha256, metadata)
    values (p_id, p_bucket, p_path, p_owner, p_uploaded_by, p_key, p_size, p_declared, p_sniffed, p_sha256, p_metadata)
    returning * into written;
  end if;
  perform set_config('role', prior_role, true), set_config('request.jwt.claims', prior_claims, true);
  -- The reservation is Tally's own table (no end-user grant): released as the owning role again.
  if p_reservation is not null then
    with gone as (delete from storage_reservations where id = p_reservation returning bucket_id, owner_id, bytes)
    update storage_usage u set reserved_bytes = u.reserved_bytes - g.bytes
      from gone g where u.bucket_id = g.bucket_id and u.owner_id = g.owner_id;
  end if;
  return next written;
end $$;

revoke execute on function storage_usage_fold(text, text), storage_usage_move(text, text, bigint),
  storage_object_get(text, text, text),
  storage_object_put(text, text, text, text, text, text, text, bigint, text, text, text, jsonb, boolean, text)
  from public, anon, authenticated;
