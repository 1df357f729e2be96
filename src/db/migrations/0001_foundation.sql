-- Tally foundation: request roles, auth helpers, identity and access tables, row-level security.
-- Runs with search_path = <tally schema>, public (set by the migrator), so names are unqualified
-- and the same file serves the default `tally` schema and the per-test schemas.

-- ---------------------------------------------------------------------------------------------
-- Roles, as Supabase/PostgREST name them. Roles are cluster-wide: create them only if missing.
-- ---------------------------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit;
  end if;
exception when duplicate_object or unique_violation then null;
end $$;

-- The connecting role must be able to switch to the request roles (a superuser always can).
do $$
begin
  execute format('grant anon, authenticated, service_role to %I', current_user);
exception when others then null;
end $$;

-- auth.uid() / auth.role() / auth.jwt() read the claims each request sets with set_config(…, true).
-- On Supabase these exist already (same semantics); elsewhere Tally creates them.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
do $$
begin
  if not exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = 'auth' and p.proname = 'uid') then
    create function auth.uid() returns text language sql stable as $f$
      select nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                             (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')), '')
    $f$;
  end if;
  if not exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = 'auth' and p.proname = 'role') then
    create function auth.role() returns text language sql stable as $f$
      select nullif(coalesce(current_setting('request.jwt.claim.role', true),
                             (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')), '')
    $f$;
  end if;
  if not exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = 'auth' and p.proname = 'jwt') then
    create function auth.jwt() returns jsonb language sql stable as $f$
      select coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                      nullif(current_setting('request.jwt.claims', true), ''))::jsonb
    $f$;
  end if;
end $$;

-- The request roles see Tally's schema, and nothing in it unless granted below.
do $$
begin
  execute format('grant usage on schema %I to anon, authenticated, service_role', current_schema());
end $$;

-- ---------------------------------------------------------------------------------------------
-- updated_at, kept by one trigger function on every table.
-- ---------------------------------------------------------------------------------------------
create function set_updated_at() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end $$;

-- ---------------------------------------------------------------------------------------------
-- users: the union of the seeds' user tables (000 users, 001 users, 002 users, 003 users, 004 User).
-- Balances and plans are not columns here: they live in the credits and billing modules.
-- ---------------------------------------------------------------------------------------------
create table users (
  id                text primary key check (length(id) between 1 and 128),
  email             text check (email is null or length(email) <= 320),
  is_email_verified boolean not null default false,
  email_verified_at timestamptz,
  name              text check (length(name) <= 255),          -- 000 name, 001/002 full_name
  username          text check (length(username) <= 64),       -- 004 username
  avatar_url        text check (length(avatar_url) <= 2048),
  bio               text check (length(bio) <= 5000),
  github_username   text check (length(github_username) <= 64),
  twitter_username  text check (length(twitter_username) <= 64),
  website_url       text check (length(website_url) <= 2048),
  provider          text not null default 'email' check (length(provider) <= 32),  -- 000: primary login provider
  provider_user_id  text check (length(provider_user_id) <= 255),
  password_hash     text,                                        -- argon2id; 004 password_hash
  role              text not null default 'user' check (role in ('user', 'admin')),  -- 004 role
  level             integer not null default 1 check (level >= 0),                   -- 000 level
  is_active         boolean not null default true,                                   -- 004 is_active
  preferences       jsonb not null default '{}'::jsonb,                              -- 002 preferences
  metadata          jsonb not null default '{}'::jsonb,                              -- 000 metadata_json
  last_login_at     timestamptz,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);
create unique index users_email_key on users (lower(email)) where email is not null;
create unique index users_username_key on users (lower(username)) where username is not null;
create unique index users_provider_key on users (provider, provider_user_id) where provider_user_id is not null;
create index users_created_idx on users (created_at desc, id desc);
create index users_github_username_idx on users (github_username) where github_username is not null;
create trigger users_updated_at before update on users for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- user_identities: linked logins (000 user_providers, 002 oauth_connections). Tokens are
-- AES-256-GCM ciphertexts (key id inside the envelope); they never leave the repository.
-- ---------------------------------------------------------------------------------------------
create table user_identities (
  id                text primary key,
  user_id           text not null references users (id) on delete cascade,
  provider          text not null check (length(provider) between 1 and 32),
  provider_user_id  text not null check (length(provider_user_id) between 1 and 255),
  email             text,
  access_token_enc  text,
  refresh_token_enc text,
  -- What end users may know about their tokens (the ciphertexts themselves are not granted).
  has_access_token  boolean generated always as (access_token_enc is not null) stored,
  has_refresh_token boolean generated always as (refresh_token_enc is not null) stored,
  token_expires_at  timestamptz,
  scopes            text[] not null default '{}',
  raw_profile       jsonb not null default '{}'::jsonb,
  metadata          jsonb not null default '{}'::jsonb,
  linked_at         timestamptz not null default now(),
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  unique (provider, provider_user_id),
  unique (user_id, provider)
);
create index user_identities_user_idx on user_identities (user_id);
create trigger user_identities_updated_at before update on user_identities for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- user_sessions: one per login (002 user_sessions_extended). The JWT carries its id as `session_id`.
-- ---------------------------------------------------------------------------------------------
create table user_sessions (
  id               text primary key,
  user_id          text not null references users (id) on delete cascade,
  ip_address       inet,
  user_agent       text check (length(user_agent) <= 1024),
  device_type      text,
  browser          text,
  os               text,
  country          text,
  last_activity_at timestamptz not null default now(),
  expires_at       timestamptz not null,
  revoked_at       timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);
create index user_sessions_user_idx on user_sessions (user_id, created_at desc);
create index user_sessions_last_activity_idx on user_sessions (last_activity_at desc);
create trigger user_sessions_updated_at before update on user_sessions for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- workspaces and members (002). A workspace's owner is always a member with role 'owner'.
-- ---------------------------------------------------------------------------------------------
create table workspaces (
  id          text primary key,
  name        text not null check (length(name) between 1 and 255),
  slug        text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'),
  description text check (length(description) <= 5000),
  owner_id    text not null references users (id) on delete cascade,
  settings    jsonb not null default '{}'::jsonb,
  is_active   boolean not null default true,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index workspaces_owner_idx on workspaces (owner_id);
create index workspaces_created_idx on workspaces (created_at desc, id desc);
create trigger workspaces_updated_at before update on workspaces for each row execute function set_updated_at();

create table workspace_members (
  workspace_id text not null references workspaces (id) on delete cascade,
  user_id      text not null references users (id) on delete cascade,
  role         text not null check (role in ('owner', 'admin', 'member', 'viewer')),
  invited_by   text references users (id) on delete set null,
  joined_at    timestamptz not null default now(),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (workspace_id, user_id)
);
create index workspace_members_user_idx on workspace_members (user_id);
create unique index workspace_members_one_owner on workspace_members (workspace_id) where role = 'owner';
create trigger workspace_members_updated_at before update on workspace_members for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- api_keys (004 ApiKey): visible prefix + SHA-256 of the whole key; the key itself is never stored.
-- ---------------------------------------------------------------------------------------------
create table api_keys (
  id            text primary key,
  user_id       text not null references users (id) on delete cascade,
  workspace_id  text references workspaces (id) on delete cascade,
  name          text not null check (length(name) between 1 and 255),
  prefix        text not null,
  key_hash      text not null unique check (key_hash ~ '^[0-9a-f]{64}$'),
  scopes        text[] not null default '{*}',
  credit_budget bigint check (credit_budget is null or credit_budget >= 0),
  credits_used  bigint not null default 0,
  expires_at    timestamptz,
  last_used_at  timestamptz,
  request_count bigint not null default 0,
  revoked_at    timestamptz,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create index api_keys_user_idx on api_keys (user_id, created_at desc);
create trigger api_keys_updated_at before update on api_keys for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- idempotency_keys: the first response to a (principal, key), replayed for the same request.
-- Kept forever (money movements rely on it); user_id lets RLS scope end users' own keys.
-- ---------------------------------------------------------------------------------------------
create table idempotency_keys (
  principal     text not null,
  key           text not null check (length(key) between 1 and 255),
  user_id       text,
  method        text not null,
  path          text not null,
  request_hash  text not null,
  status_code   integer not null,
  -- The answer's exact JSON text: replayed as stored, and cheap to write (no jsonb tree to build).
  response_body text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (principal, key)
);
create trigger idempotency_keys_updated_at before update on idempotency_keys for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Membership helpers for policies. SECURITY DEFINER so a policy on workspace_members can ask
-- about workspace_members without recursing into its own policy; they only answer for auth.uid().
-- ---------------------------------------------------------------------------------------------
create function is_workspace_member(p_workspace_id text) returns boolean
language sql stable security definer set search_path from current as $$
  select exists (select 1 from workspace_members m
                 where m.workspace_id = p_workspace_id and m.user_id = auth.uid())
$$;

create function workspace_role_of(p_workspace_id text) returns text
language sql stable security definer set search_path from current as $$
  select m.role from workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = auth.uid()
$$;

create function shares_workspace_with(p_user_id text) returns boolean
language sql stable security definer set search_path from current as $$
  select exists (select 1 from workspace_members a join workspace_members b on a.workspace_id = b.workspace_id
                 where a.user_id = auth.uid() and b.user_id = p_user_id)
$$;

-- Functions are executable by PUBLIC by default. In Tally's schema none is, except what is granted
-- by name; every later migration that creates functions ends with the same revoke (a test checks).
do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;

-- ---------------------------------------------------------------------------------------------
-- Row-level security. `authenticated` sees its own rows and its workspaces' rows; `anon` sees
-- nothing. Service requests run as the owning role, which bypasses RLS by design.
-- Column grants narrow writes further: no end user can change role, level, provider or hashes.
-- ---------------------------------------------------------------------------------------------
alter table users enable row level security;
alter table user_identities enable row level security;
alter table user_sessions enable row level security;
alter table workspaces enable row level security;
alter table workspace_members enable row level security;
alter table api_keys enable row level security;
alter table idempotency_keys enable row level security;

-- users: read self and co-members; update a short list of profile columns on self only.
grant select (id, email, is_email_verified, email_verified_at, name, username, avatar_url, bio,
              github_username, twitter_username, website_url, provider, provider_user_id, role, level, is_active,
              preferences, metadata, last_login_at, created_at, updated_at) on users to authenticated;
grant update (name, username, avatar_url, bio, github_username, twitter_username, website_url, preferences)
  on users to authenticated;
create policy users_select_self on users for select to authenticated
  using (id = auth.uid() or shares_workspace_with(id));
create policy users_update_self on users for update to authenticated
  using (id = auth.uid()) with check (id = auth.uid());

-- user_identities: read own links, never the token ciphertexts.
grant select (id, user_id, provider, provider_user_id, email, has_access_token, has_refresh_token,
              token_expires_at, scopes, linked_at, created_at, updated_at) on user_identities to authenticated;
create policy user_identities_select_own on user_identities for select to authenticated
  using (user_id = auth.uid());

-- user_sessions: read own; revoke own (revoked_at only).
grant select on user_sessions to authenticated;
grant update (revoked_at) on user_sessions to authenticated;
create policy user_sessions_select_own on user_sessions for select to authenticated
  using (user_id = auth.uid());
create policy user_sessions_update_own on user_sessions for update to authenticated
  using (user_id = auth.uid()) with check (user_id = auth.uid());

-- workspaces: members read; anyone signed in creates one they own; admins edit; owners delete.
grant select, insert, delete on workspaces to authenticated;
grant update (name, slug, description, settings, is_active) on workspaces to authenticated;
create policy workspaces_select_member on workspaces for select to authenticated
  using (owner_id = auth.uid() or is_workspace_member(id));
create policy workspaces_insert_owner on workspaces for insert to authenticated
  with check (owner_id = auth.uid());
create policy workspaces_update_admin on workspaces for update to authenticated
  using (workspace_role_of(id) in ('owner', 'admin')) with check (workspace_role_of(id) in ('owner', 'admin'));
create policy workspaces_delete_owner on workspaces for delete to authenticated
  using (owner_id = auth.uid());

-- workspace_members: members read the roster; owners/admins manage it; nobody but the service
-- makes someone an owner (the owner row is created with the workspace, below).
grant select, insert, delete on workspace_members to authenticated;
grant update (role) on workspace_members to authenticated;
-- `user_id = auth.uid()` lets an INSERT … RETURNING see the row it just wrote (the helper's
-- snapshot predates the insert).
create policy workspace_members_select on workspace_members for select to authenticated
  using (user_id = auth.uid() or is_workspace_member(workspace_id));
create policy workspace_members_insert on workspace_members for insert to authenticated
  with check (
    (role <> 'owner' and workspace_role_of(workspace_id) in ('owner', 'admin'))
    or (role = 'owner' and user_id = auth.uid()
        and exists (select 1 from workspaces w where w.id = workspace_id and w.owner_id = auth.uid()))
  );
create policy workspace_members_update on workspace_members for update to authenticated
  using (role <> 'owner' and workspace_role_of(workspace_id) in ('owner', 'admin'))
  with check (role <> 'owner' and workspace_role_of(workspace_id) in ('owner', 'admin'));
create policy workspace_members_delete on workspace_members for delete to authenticated
  using (role <> 'owner' and (workspace_role_of(workspace_id) in ('owner', 'admin') or user_id = auth.uid()));

-- api_keys: own keys; an end user may create and revoke, never raise budgets or reset counters.
grant select (id, user_id, workspace_id, name, prefix, scopes, credit_budget, credits_used, expires_at,
              last_used_at, request_count, revoked_at, created_at, updated_at) on api_keys to authenticated;
grant insert (id, user_id, workspace_id, name, prefix, key_hash, scopes, expires_at) on api_keys to authenticated;
grant update (revoked_at) on api_keys to authenticated;
create policy api_keys_select_own on api_keys for select to authenticated using (user_id = auth.uid());
create policy api_keys_insert_own on api_keys for insert to authenticated
  with check (user_id = auth.uid() and (workspace_id is null or is_workspace_member(workspace_id)));
create policy api_keys_revoke_own on api_keys for update to authenticated
  using (user_id = auth.uid()) with check (user_id = auth.uid());

-- idempotency_keys: an end user's requests record and replay their own keys only.
grant select, insert on idempotency_keys to authenticated;
grant update (status_code, response_body) on idempotency_keys to authenticated;
create policy idempotency_keys_own on idempotency_keys for all to authenticated
  using (user_id = auth.uid()) with check (user_id = auth.uid());
