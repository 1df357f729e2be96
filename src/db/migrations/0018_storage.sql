-- Storage (issue 15, seed 003) and project files (seed 002). See docs/storage.md.
--
-- storage_buckets: a bucket's rules (size limit, allowed types, owner rule, per-owner byte quota).
-- storage_objects: one row per stored object; the bytes live in the driver under `storage_key`
--   (never the caller's path, so overwrites, moves and odd names cannot collide or escape).
-- storage_usage: bytes used and reserved per (bucket, owner); `used_bytes` is kept by a trigger on
--   storage_objects, `reserved_bytes` by storage_reservations (an upload reserves before its first
--   byte is written and settles when its row commits).
-- storage_deletions: the delete outbox. A trigger enqueues every storage key whose row goes away
--   (a delete, an overwrite, a cascade), in the same transaction; a sweeper deletes the bytes.
-- storage_link_uses: one row per used one-use signed upload link.
-- project_files / project_file_versions: seed 002's files and versions, content inline or in storage.

create table storage_buckets (
  id                  text primary key check (id ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
  public              boolean not null default false,
  file_size_limit     bigint check (file_size_limit > 0),
  allowed_mime_types  text[] check (cardinality(allowed_mime_types) <= 100),
  owner_rule          text not null default 'owner_folder' check (owner_rule in ('owner_folder', 'none')),
  user_quota_bytes    bigint check (user_quota_bytes >= 0),
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now()
);
create trigger storage_buckets_updated_at before update on storage_buckets for each row execute function set_updated_at();

create table storage_objects (
  id             text primary key,
  bucket_id      text not null references storage_buckets (id),
  path           text not null check (length(path) between 1 and 1024),
  -- The path's first segment in an owner_folder bucket: a user id or a workspace id (null otherwise).
  owner_id       text check (length(owner_id) <= 128),
  uploaded_by    text references users (id) on delete set null,
  storage_key    text not null unique check (storage_key ~ '^[a-z0-9][a-z0-9/_.-]*$' and length(storage_key) <= 300),
  size           bigint not null check (size >= 0),
  declared_type  text check (length(declared_type) <= 255),
  sniffed_type   text check (length(sniffed_type) <= 255),
  sha256         text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  metadata       jsonb not null default '{}',
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  unique (bucket_id, path)
);
create index storage_objects_owner_idx on storage_objects (owner_id) where owner_id is not null;
create trigger storage_objects_updated_at before update on storage_objects for each row execute function set_updated_at();

create table storage_usage (
  bucket_id       text not null references storage_buckets (id) on delete cascade,
  owner_id        text not null,
  used_bytes      bigint not null default 0 check (used_bytes >= 0),
  reserved_bytes  bigint not null default 0 check (reserved_bytes >= 0),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (bucket_id, owner_id)
);
create trigger storage_usage_updated_at before update on storage_usage for each row execute function set_updated_at();

create table storage_reservations (
  id          text primary key,
  bucket_id   text not null,
  owner_id    text not null,
  bytes       bigint not null check (bytes >= 0),
  expires_at  timestamptz not null,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  foreign key (bucket_id, owner_id) references storage_usage (bucket_id, owner_id) on delete cascade
);
create index storage_reservations_expires_idx on storage_reservations (expires_at);
create trigger storage_reservations_updated_at before update on storage_reservations for each row execute function set_updated_at();

create table storage_deletions (
  id               bigint generated always as identity primary key,
  storage_key      text not null,
  attempts         integer not null default 0 check (attempts >= 0),
  next_attempt_at  timestamptz not null default now(),
  last_error       text check (length(last_error) <= 2000),
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);
create index storage_deletions_due_idx on storage_deletions (next_attempt_at);
create trigger storage_deletions_updated_at before update on storage_deletions for each row execute function set_updated_at();

create table storage_link_uses (
  id          text primary key check (length(id) between 8 and 64),
  expires_at  timestamptz not null,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create trigger storage_link_uses_updated_at before update on storage_link_uses for each row execute function set_updated_at();

-- Bytes used follow the rows, whoever writes them (an upload, an overwrite, a delete, a cascade).
create function storage_objects_account() returns trigger
language plpgsql security definer set search_path from current as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    if old.owner_id is not null then
      update storage_usage set used_bytes = used_bytes - old.size
       where bucket_id = old.bucket_id and owner_id = old.owner_id;
    end if;
    if tg_op = 'DELETE' or new.storage_key <> old.storage_key then
      insert into storage_deletions (storage_key) values (old.storage_key);
    end if;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    if new.owner_id is not null then
      insert into storage_usage (bucket_id, owner_id, used_bytes) values (new.bucket_id, new.owner_id, new.size)
      on conflict (bucket_id, owner_id) do update set used_bytes = storage_usage.used_bytes + excluded.used_bytes;
    end if;
    return new;
  end if;
  return old;
end $$;
create trigger storage_objects_account after insert or update or delete on storage_objects
  for each row execute function storage_objects_account();

-- ---------------------------------------------------------------------------------------------
-- Project files (seed 002): a file is a path in a project; every save is a version with its author.
-- ---------------------------------------------------------------------------------------------
create table project_files (
  id               text primary key,
  project_id       text not null references projects (id) on delete cascade,
  path             text not null check (length(path) between 1 and 1024),
  language         text check (length(language) <= 64),
  current_version  integer not null default 0 check (current_version >= 0),
  size             bigint not null default 0 check (size >= 0),
  sha256           text check (sha256 ~ '^[0-9a-f]{64}$'),
  created_by       text references users (id) on delete set null,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  unique (project_id, path)
);
create index project_files_project_idx on project_files (project_id, path);
create trigger project_files_updated_at before update on project_files for each row execute function set_updated_at();

create table project_file_versions (
  id             text primary key,
  file_id        text not null references project_files (id) on delete cascade,
  project_id     text not null references projects (id) on delete cascade,
  version        integer not null check (version >= 1),
  content        text check (length(content) <= 65536),
  storage_key    text unique check (storage_key ~ '^[a-z0-9][a-z0-9/_.-]*$' and length(storage_key) <= 300),
  size           bigint not null check (size >= 0),
  sha256         text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  content_type   text check (length(content_type) <= 255),
  language       text check (length(language) <= 64),
  author_id      text references users (id) on delete set null,
  message        text check (length(message) <= 1000),
  restored_from  integer,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  unique (file_id, version),
  check ((content is null) <> (storage_key is null))
);
create index project_file_versions_file_idx on project_file_versions (file_id, version desc);
create trigger project_file_versions_updated_at before update on project_file_versions for each row execute function set_updated_at();

-- A version's bytes in storage go through the same outbox when its row goes (a project deleted).
create function project_file_versions_release() returns trigger
language plpgsql security definer set search_path from current as $$
begin
  if old.storage_key is not null then
    insert into storage_deletions (storage_key) values (old.storage_key);
  end if;
  return old;
end $$;
create trigger project_file_versions_release after delete on project_file_versions
  for each row execute function project_file_versions_release();

-- ---------------------------------------------------------------------------------------------
-- Row-level security. Objects: the owner (the user, or a member of the workspace named by the
-- path's first segment) reads; the user or a workspace writer (owner/admin/member) writes.
-- Buckets are readable (their rules are not secret); usage, reservations, the outbox and link
-- uses are the service's (no grant). Project files follow their project.
-- ---------------------------------------------------------------------------------------------
alter table storage_buckets enable row level security;
alter table storage_objects enable row level security;
alter table storage_usage enable row level security;
alter table storage_reservations enable row level security;
alter table storage_deletions enable row level security;
alter table storage_link_uses enable row level security;
alter table project_files enable row level security;
alter table project_file_versions enable row level security;

grant select on storage_buckets to authenticated;
create policy storage_buckets_select on storage_buckets for select to authenticated using (true);

grant select, delete on storage_objects to authenticated;
grant insert (id, bucket_id, path, owner_id, uploaded_by, storage_key, size, declared_type, sniffed_type, sha256, metadata)
  on storage_objects to authenticated;
grant update (path, storage_key, size, declared_type, sniffed_type, sha256, metadata, uploaded_by) on storage_objects to authenticated;
create policy storage_objects_select on storage_objects for select to authenticated
  using (owner_id = auth.uid() or (owner_id is not null and is_workspace_member(owner_id)));
create policy storage_objects_insert on storage_objects for insert to authenticated
  with check (uploaded_by = auth.uid()
              and (owner_id = auth.uid() or workspace_role_of(owner_id) in ('owner', 'admin', 'member')));
create policy storage_objects_update on storage_objects for update to authenticated
  using (owner_id = auth.uid() or workspace_role_of(owner_id) in ('owner', 'admin', 'member'))
  with check (owner_id = auth.uid() or workspace_role_of(owner_id) in ('owner', 'admin', 'member'));
create policy storage_objects_delete on storage_objects for delete to authenticated
  using (owner_id = auth.uid() or workspace_role_of(owner_id) in ('owner', 'admin', 'member'));

grant select on project_files, project_file_versions to authenticated;
grant insert (id, project_id, path, language, current_version, size, sha256, created_by) on project_files to authenticated;
grant update (language, current_version, size, sha256) on project_files to authenticated;
grant delete on project_files to authenticated;
grant insert (id, file_id, project_id, version, content, storage_key, size, sha256, content_type, language, author_id,
              message, restored_from) on project_file_versions to authenticated;
do $$
declare
  t text;
  readable text := 'exists (select 1 from projects p where p.id = project_id)';
  writable text := 'exists (select 1 from projects p where p.id = project_id and (p.user_id = auth.uid() or '
                || '(p.workspace_id is not null and workspace_role_of(p.workspace_id) in (''owner'', ''admin'', ''member''))))';
begin
  foreach t in array array['project_files', 'project_file_versions'] loop
    execute format('create policy %I on %I for select to authenticated using (%s)', t || '_select', t, readable);
    execute format('create policy %I on %I for insert to authenticated with check (%s)', t || '_insert', t, writable);
    execute format('create policy %I on %I for update to authenticated using (%s) with check (%s)', t || '_update', t, writable, writable);
    execute format('create policy %I on %I for delete to authenticated using (%s)', t || '_delete', t, writable);
  end loop;
end $$;

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
