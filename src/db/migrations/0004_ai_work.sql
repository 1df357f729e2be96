-- AI work (issue 6): the one background queue, jobs that hold credits, projects owned by a user or a
-- workspace with their agent work (conversations, agent sessions, messages, tool usage, user
-- requests, commits), and sealed secrets (environment variables, service tokens, service
-- connections) with an audit of every reveal. See docs/jobs.md, docs/queue.md, docs/projects.md
-- and docs/secrets.md.

-- ---------------------------------------------------------------------------------------------
-- background_jobs (002 background_jobs): THE queue. Workers claim with FOR UPDATE SKIP LOCKED.
-- 002 job_name → name, job_type → type (open: modules register their own types), scheduled_for
-- → run_at, error → last_error. 002's 'retrying' is a pending row with attempts > 0.
-- ---------------------------------------------------------------------------------------------
create table background_jobs (
  id           text primary key,
  type         text not null check (type ~ '^[a-z0-9_.:-]{1,64}$'),
  name         text check (length(name) <= 255),
  status       text not null default 'pending'
               check (status in ('pending', 'running', 'completed', 'failed', 'canceled')),
  input        jsonb not null default '{}'::jsonb,
  output       jsonb,
  last_error   text check (length(last_error) <= 4000),
  attempts     integer not null default 0 check (attempts >= 0),
  max_attempts integer not null default 5 check (max_attempts between 1 and 100),
  priority     integer not null default 0,
  run_at       timestamptz not null default now(),
  dedupe_key   text unique check (length(dedupe_key) <= 255),
  locked_by    text,
  locked_at    timestamptz,
  started_at   timestamptz,
  completed_at timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);
-- The claim query's index: due pending rows in priority order.
create index background_jobs_due_idx on background_jobs (priority desc, run_at, id) where status = 'pending';
create index background_jobs_running_idx on background_jobs (locked_at) where status = 'running';
create index background_jobs_type_idx on background_jobs (type, status);
create trigger background_jobs_updated_at before update on background_jobs for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- projects: 000 projects + 002 projects, owned by exactly one user or one workspace.
-- ---------------------------------------------------------------------------------------------
create table projects (
  id                       text primary key,
  user_id                  text references users (id) on delete cascade,
  workspace_id             text references workspaces (id) on delete cascade,
  created_by               text references users (id) on delete set null,
  name                     text not null check (length(name) between 1 and 255),
  slug                     text check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'),
  description              text check (length(description) <= 5000),
  status                   text not null default 'idle' check (length(status) between 1 and 32),
  preview_url              text check (length(preview_url) <= 2048),
  preview_port             integer check (preview_port between 1 and 65535),
  repo_path                text check (length(repo_path) <= 1024),
  repository_url           text check (length(repository_url) <= 2048),
  language                 text check (length(language) <= 64),
  framework                text check (length(framework) <= 64),
  visibility               text not null default 'private' check (visibility in ('public', 'private', 'team')),
  initial_prompt           text check (length(initial_prompt) <= 100000),
  template_type            text check (length(template_type) <= 64),
  active_claude_session_id text check (length(active_claude_session_id) <= 128),
  active_cursor_session_id text check (length(active_cursor_session_id) <= 128),
  preferred_cli            text not null default 'remote' check (length(preferred_cli) between 1 and 32),
  selected_model           text check (length(selected_model) <= 64),
  fallback_enabled         boolean not null default true,
  settings                 jsonb not null default '{}'::jsonb,
  last_active_at           timestamptz,
  created_at               timestamptz not null default now(),
  updated_at               timestamptz not null default now(),
  check ((user_id is null) <> (workspace_id is null))
);
create index projects_user_idx on projects (user_id, created_at desc, id desc) where user_id is not null;
create index projects_workspace_idx on projects (workspace_id, created_at desc, id desc) where workspace_id is not null;
create unique index projects_user_slug_key on projects (user_id, slug) where user_id is not null and slug is not null;
create unique index projects_workspace_slug_key on projects (workspace_id, slug) where workspace_id is not null and slug is not null;
create index projects_status_idx on projects (status);
create trigger projects_updated_at before update on projects for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- jobs: 001 video_jobs + 002 ai_jobs. The cost is held at creation (credit_holds) and settled
-- exactly once (capture on completion; release on failure, cancellation or timeout).
-- ---------------------------------------------------------------------------------------------
create table jobs (
  id           text primary key,
  user_id      text not null references users (id) on delete cascade,
  project_id   text references projects (id) on delete set null,
  kind         text not null check (kind ~ '^[A-Za-z0-9_.:-]{1,64}$'),   -- 002 job_type
  model        text check (length(model) <= 128),
  provider     text not null default 'default' check (provider ~ '^[A-Za-z0-9_.-]{1,64}$'),
  external_id  text check (length(external_id) between 1 and 255),    -- 001 job_id
  status       text not null default 'pending'
               check (status in ('pending', 'processing', 'completed', 'failed', 'canceled', 'timed_out')),
  input        jsonb not null default '{}'::jsonb,
  prompt       text check (length(prompt) <= 100000),                 -- 001 prompt
  image_url    text check (length(image_url) <= 2048),                -- 001 image_url
  output       jsonb,
  result_url   text check (length(result_url) <= 2048),
  error        text check (length(error) <= 4000),
  tokens_used  integer check (tokens_used >= 0),
  cost         bigint not null check (cost >= 0),                      -- credits held (001 cost_credits)
  captured     bigint check (captured >= 0 and captured <= cost),     -- credits charged on completion
  hold_id      text references credit_holds (id),
  metadata     jsonb not null default '{}'::jsonb,
  timeout_at   timestamptz not null,
  started_at   timestamptz,
  completed_at timestamptz,
  duration_ms  integer check (duration_ms >= 0),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  check ((cost = 0) = (hold_id is null)),
  check ((status in ('completed', 'failed', 'canceled', 'timed_out')) = (completed_at is not null))
);
create unique index jobs_external_key on jobs (provider, external_id) where external_id is not null;
create index jobs_user_idx on jobs (user_id, created_at desc, id desc);
create index jobs_project_idx on jobs (project_id) where project_id is not null;
create index jobs_status_idx on jobs (status) where status in ('pending', 'processing');
create trigger jobs_updated_at before update on jobs for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Agent work, every row hangs off a project (and so off its owner).
-- ---------------------------------------------------------------------------------------------
create table conversations (                                            -- 002 conversations
  id          text primary key,
  project_id  text not null references projects (id) on delete cascade,
  user_id     text references users (id) on delete set null,
  title       text check (length(title) <= 500),
  context     jsonb not null default '{}'::jsonb,
  is_archived boolean not null default false,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index conversations_project_idx on conversations (project_id, created_at desc, id desc);
create trigger conversations_updated_at before update on conversations for each row execute function set_updated_at();

-- 000 sessions. Totals are kept by triggers on messages and tool_usages (same transaction), and
-- nobody but the owning role can write them.
create table agent_sessions (
  id                  text primary key,
  project_id          text not null references projects (id) on delete cascade,
  conversation_id     text references conversations (id) on delete set null,
  external_session_id text check (length(external_session_id) <= 128),  -- 000 claude_session_id
  status              text not null default 'active' check (status in ('active', 'completed', 'failed', 'canceled')),
  model               text check (length(model) <= 128),
  cli_type            text not null default 'claude' check (length(cli_type) between 1 and 32),
  transcript_path     text check (length(transcript_path) <= 1024),
  transcript_format   text not null default 'json' check (length(transcript_format) between 1 and 32),
  instruction         text check (length(instruction) <= 100000),
  summary             text check (length(summary) <= 100000),
  total_messages      integer not null default 0,
  total_tools_used    integer not null default 0,
  total_tokens        bigint not null default 0,
  total_cost_usd      numeric(14, 6) not null default 0,
  total_credits       bigint not null default 0,
  duration_ms         bigint check (duration_ms >= 0),
  started_at          timestamptz not null default now(),
  completed_at        timestamptz,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now()
);
create index agent_sessions_project_idx on agent_sessions (project_id, created_at desc, id desc);
create index agent_sessions_external_idx on agent_sessions (external_session_id) where external_session_id is not null;
create trigger agent_sessions_updated_at before update on agent_sessions for each row execute function set_updated_at();

-- 000 messages + 002 messages. Append-only for end users.
create table messages (
  id                text primary key,
  project_id        text not null references projects (id) on delete cascade,
  session_id        text references agent_sessions (id) on delete set null,
  conversation_id   text references conversations (id) on delete cascade,
  parent_message_id text references messages (id) on delete set null,
  user_id           text references users (id) on delete set null,
  role              text not null check (role in ('user', 'assistant', 'system', 'tool')),
  message_type      text check (length(message_type) <= 32),
  content           text not null check (length(content) <= 1000000),
  metadata          jsonb not null default '{}'::jsonb,
  model             text check (length(model) <= 128),
  duration_ms       integer check (duration_ms >= 0),
  token_count       integer check (token_count >= 0),                  -- 002 tokens_used
  cost_usd          numeric(14, 6) check (cost_usd >= 0),
  -- What the owner was charged through a usage event (null: not charged; see docs/projects.md).
  charge_metric     text check (length(charge_metric) <= 64),
  charge_quantity   bigint check (charge_quantity > 0),
  credits_charged   bigint check (credits_charged >= 0),
  usage_event_id    text,
  commit_sha        text check (length(commit_sha) <= 64),
  cli_source        text check (length(cli_source) <= 32),
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);
create index messages_project_idx on messages (project_id, created_at desc, id desc);
create index messages_session_idx on messages (session_id) where session_id is not null;
create index messages_conversation_idx on messages (conversation_id, created_at) where conversation_id is not null;
create trigger messages_updated_at before update on messages for each row execute function set_updated_at();

create table tool_usages (                                              -- 000 tools_usage
  id             text primary key,
  project_id     text not null references projects (id) on delete cascade,
  session_id     text not null references agent_sessions (id) on delete cascade,
  message_id     text references messages (id) on delete set null,
  tool_name      text not null check (length(tool_name) between 1 and 64),
  tool_action    text check (length(tool_action) <= 32),
  input_data     jsonb,
  output_data    jsonb,
  files_affected jsonb not null default '[]'::jsonb,
  lines_added    integer not null default 0 check (lines_added >= 0),
  lines_removed  integer not null default 0 check (lines_removed >= 0),
  duration_ms    integer check (duration_ms >= 0),
  is_error       boolean not null default false,
  error_message  text check (length(error_message) <= 10000),
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);
create index tool_usages_project_idx on tool_usages (project_id, created_at desc, id desc);
create index tool_usages_session_idx on tool_usages (session_id);
create index tool_usages_tool_idx on tool_usages (tool_name);
create trigger tool_usages_updated_at before update on tool_usages for each row execute function set_updated_at();

create table user_requests (                                            -- 000 user_requests
  id              text primary key,
  project_id      text not null references projects (id) on delete cascade,
  user_message_id text unique references messages (id) on delete cascade,
  session_id      text references agent_sessions (id) on delete set null,
  user_id         text references users (id) on delete set null,
  instruction     text not null check (length(instruction) between 1 and 100000),
  request_type    text not null default 'act' check (length(request_type) between 1 and 16),
  is_completed    boolean not null default false,
  is_successful   boolean,
  result_metadata jsonb,
  error_message   text check (length(error_message) <= 10000),
  cli_type_used   text check (length(cli_type_used) <= 32),
  model_used      text check (length(model_used) <= 128),
  started_at      timestamptz,
  completed_at    timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  check (is_completed = (completed_at is not null)),
  check (is_completed or is_successful is null)
);
create index user_requests_project_idx on user_requests (project_id, created_at desc, id desc);
create index user_requests_session_idx on user_requests (session_id) where session_id is not null;
create trigger user_requests_updated_at before update on user_requests for each row execute function set_updated_at();

create table commits (                                                  -- 000 commits
  id            text primary key,
  project_id    text not null references projects (id) on delete cascade,
  session_id    text references agent_sessions (id) on delete set null,
  commit_sha    text not null check (commit_sha ~ '^[0-9a-f]{7,64}$'),
  parent_sha    text check (parent_sha ~ '^[0-9a-f]{7,64}$'),
  message       text not null check (length(message) <= 100000),
  author_type   text check (length(author_type) <= 32),
  author_name   text check (length(author_name) <= 128),
  author_email  text check (length(author_email) <= 320),
  files_changed jsonb not null default '[]'::jsonb,
  stats         jsonb not null default '{}'::jsonb,
  diff          text check (length(diff) <= 5000000),
  committed_at  timestamptz not null default now(),
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  unique (project_id, commit_sha)
);
create index commits_project_idx on commits (project_id, created_at desc, id desc);
create index commits_session_idx on commits (session_id) where session_id is not null;
create trigger commits_updated_at before update on commits for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Secrets. Values are AES-256-GCM envelopes (SecretBox: `v1.<key id>.…`); `key_id` repeats the
-- envelope's key id so a rotation finds what still needs re-encrypting. Only a short hint (the
-- last characters of long values) is kept in the clear, for the masked form.
-- ---------------------------------------------------------------------------------------------
create table env_vars (                                                 -- 000 env_vars + 002 environment_variables
  id          text primary key,
  project_id  text not null references projects (id) on delete cascade,
  key         text not null check (key ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
  value_enc   text not null,
  key_id      text not null,
  value_hint  text check (length(value_hint) <= 4),
  scope       text not null default 'runtime' check (length(scope) between 1 and 32),
  environment text not null default 'all' check (environment in ('development', 'staging', 'production', 'all')),
  var_type    text not null default 'string' check (length(var_type) between 1 and 32),
  is_secret   boolean not null default true,
  description text check (length(description) <= 2000),
  created_by  text references users (id) on delete set null,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  unique (project_id, key, scope, environment)
);
create index env_vars_project_idx on env_vars (project_id, created_at desc, id desc);
create trigger env_vars_updated_at before update on env_vars for each row execute function set_updated_at();

-- 000 service_tokens + 002 api_integrations: a provider token or API key owned by a user or a
-- workspace (000's had no owner and were stored in plain text).
create table service_tokens (
  id           text primary key,
  user_id      text references users (id) on delete cascade,
  workspace_id text references workspaces (id) on delete cascade,
  created_by   text references users (id) on delete set null,
  provider     text not null check (provider ~ '^[a-z0-9_.-]{1,50}$'),
  name         text not null check (length(name) between 1 and 255),
  token_enc    text not null,
  key_id       text not null,
  token_hint   text check (length(token_hint) <= 4),
  config       jsonb not null default '{}'::jsonb,
  is_active    boolean not null default true,
  last_used_at timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  check ((user_id is null) <> (workspace_id is null))
);
create unique index service_tokens_user_key on service_tokens (user_id, provider, name) where user_id is not null;
create unique index service_tokens_workspace_key on service_tokens (workspace_id, provider, name) where workspace_id is not null;
create index service_tokens_provider_idx on service_tokens (provider);
create trigger service_tokens_updated_at before update on service_tokens for each row execute function set_updated_at();

create table service_connections (                                      -- 000 project_service_connections
  id               text primary key,
  project_id       text not null references projects (id) on delete cascade,
  provider         text not null check (provider ~ '^[a-z0-9_.-]{1,32}$'),
  status           text not null default 'connected' check (status in ('connected', 'disconnected', 'error', 'pending')),
  service_data     jsonb not null default '{}'::jsonb,
  service_token_id text references service_tokens (id) on delete set null,
  last_sync_at     timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  unique (project_id, provider)
);
create index service_connections_provider_idx on service_connections (provider, status);
create trigger service_connections_updated_at before update on service_connections for each row execute function set_updated_at();

-- Every reveal of a secret, written in the reveal's own transaction.
create table secret_reveals (
  id            text primary key,
  actor         text not null check (length(actor) <= 160),   -- 'service' or 'user:<id>'
  actor_user_id text references users (id) on delete set null,
  target_type   text not null check (target_type in ('env_var', 'service_token')),
  target_id     text not null,
  project_id    text references projects (id) on delete set null,
  request_id    text not null,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create index secret_reveals_target_idx on secret_reveals (target_type, target_id, created_at desc);
create trigger secret_reveals_updated_at before update on secret_reveals for each row execute function set_updated_at();
-- The audit trail is append-only.
create function secret_reveals_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'secret_reveals is append-only' using errcode = '42501';
end $$;
create trigger secret_reveals_append_only before update or delete on secret_reveals
  for each row execute function secret_reveals_append_only();

-- ---------------------------------------------------------------------------------------------
-- Session totals: kept by the database in the transaction that records the message or tool
-- call, so they always equal the sums (security definer: end users cannot write totals).
-- ---------------------------------------------------------------------------------------------
create function agent_session_count_message() returns trigger
language plpgsql security definer set search_path from current as $$
begin
  if new.session_id is not null then
    update agent_sessions
       set total_messages = total_messages + 1,
           total_tokens   = total_tokens + coalesce(new.token_count, 0),
           total_cost_usd = total_cost_usd + coalesce(new.cost_usd, 0),
           total_credits  = total_credits + coalesce(new.credits_charged, 0)
     where id = new.session_id;
  end if;
  return null;
end $$;
create trigger messages_session_totals after insert on messages
  for each row execute function agent_session_count_message();

create function agent_session_count_tool() returns trigger
language plpgsql security definer set search_path from current as $$
begin
  update agent_sessions set total_tools_used = total_tools_used + 1 where id = new.session_id;
  return null;
end $$;
create trigger tool_usages_session_totals after insert on tool_usages
  for each row execute function agent_session_count_tool();

-- A message, tool call, request or commit must belong to the project of the session or
-- conversation it names (a foreign key cannot say so).
create function agent_work_same_project() returns trigger
language plpgsql security definer set search_path from current as $$
declare
  sess text := case when tg_table_name in ('messages', 'tool_usages', 'user_requests', 'commits') then new.session_id end;
begin
  if sess is not null and not exists (select 1 from agent_sessions s where s.id = sess and s.project_id = new.project_id) then
    raise exception 'session % is not in project %', sess, new.project_id using errcode = '23503';
  end if;
  if tg_table_name = 'messages' then
    if new.conversation_id is not null and not exists (
         select 1 from conversations c where c.id = new.conversation_id and c.project_id = new.project_id) then
      raise exception 'conversation % is not in project %', new.conversation_id, new.project_id using errcode = '23503';
    end if;
    if new.parent_message_id is not null and not exists (
         select 1 from messages m where m.id = new.parent_message_id and m.project_id = new.project_id) then
      raise exception 'message % is not in project %', new.parent_message_id, new.project_id using errcode = '23503';
    end if;
  end if;
  return new;
end $$;
create trigger messages_same_project before insert or update on messages
  for each row execute function agent_work_same_project();
create trigger tool_usages_same_project before insert or update on tool_usages
  for each row execute function agent_work_same_project();
create trigger user_requests_same_project before insert or update on user_requests
  for each row execute function agent_work_same_project();
create trigger commits_same_project before insert or update on commits
  for each row execute function agent_work_same_project();

-- ---------------------------------------------------------------------------------------------
-- Row-level security. A project is readable by its user or any member of its workspace (viewer
-- and up), writable by its user or the workspace's owner/admin/member, deletable by its user or
-- the workspace owner. Every child row follows its project. Jobs are read-only for their user.
-- ---------------------------------------------------------------------------------------------
alter table background_jobs enable row level security;
alter table projects enable row level security;
alter table jobs enable row level security;
alter table conversations enable row level security;
alter table agent_sessions enable row level security;
alter table messages enable row level security;
alter table tool_usages enable row level security;
alter table user_requests enable row level security;
alter table commits enable row level security;
alter table env_vars enable row level security;
alter table service_tokens enable row level security;
alter table service_connections enable row level security;
alter table secret_reveals enable row level security;
-- background_jobs: no grant, no policy — the queue is internal.

-- jobs: read own, write nothing (transitions are the service's).
grant select on jobs to authenticated;
create policy jobs_read_own on jobs for select to authenticated using (user_id = auth.uid());

grant select on projects to authenticated;
grant insert (id, user_id, workspace_id, created_by, name, slug, description, status, preview_url, preview_port,
              repo_path, repository_url, language, framework, visibility, initial_prompt, template_type,
              active_claude_session_id, active_cursor_session_id, preferred_cli, selected_model, fallback_enabled,
              settings, last_active_at) on projects to authenticated;
grant update (name, slug, description, status, preview_url, preview_port, repo_path, repository_url, language,
              framework, visibility, initial_prompt, template_type, active_claude_session_id,
              active_cursor_session_id, preferred_cli, selected_model, fallback_enabled, settings, last_active_at)
  on projects to authenticated;
grant delete on projects to authenticated;
create policy projects_select on projects for select to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and is_workspace_member(workspace_id)));
create policy projects_insert on projects for insert to authenticated
  with check ((user_id = auth.uid() and workspace_id is null)
              or (workspace_id is not null and workspace_role_of(workspace_id) in ('owner', 'admin', 'member')));
create policy projects_update on projects for update to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and workspace_role_of(workspace_id) in ('owner', 'admin', 'member')))
  with check (user_id = auth.uid() or (workspace_id is not null and workspace_role_of(workspace_id) in ('owner', 'admin', 'member')));
create policy projects_delete on projects for delete to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and workspace_role_of(workspace_id) = 'owner'));

-- Child tables: read with the project, write as a writer of the project. The subquery runs under
-- the projects policy, so a stranger's project is simply not there.
do $$
declare
  t text;
  readable text := 'exists (select 1 from projects p where p.id = project_id)';
  writable text := 'exists (select 1 from projects p where p.id = project_id and (p.user_id = auth.uid() or '
                || '(p.workspace_id is not null and workspace_role_of(p.workspace_id) in (''owner'', ''admin'', ''member''))))';
begin
  foreach t in array array['conversations', 'agent_sessions', 'messages', 'tool_usages', 'user_requests', 'commits',
                           'env_vars', 'service_connections'] loop
    execute format('create policy %I on %I for select to authenticated using (%s)', t || '_select', t, readable);
    execute format('create policy %I on %I for insert to authenticated with check (%s)', t || '_insert', t, writable);
    execute format('create policy %I on %I for update to authenticated using (%s) with check (%s)', t || '_update', t, writable, writable);
    execute format('create policy %I on %I for delete to authenticated using (%s)', t || '_delete', t, writable);
  end loop;
end $$;

grant select, insert, delete on conversations to authenticated;
grant update (title, context, is_archived) on conversations to authenticated;
grant select, delete on agent_sessions to authenticated;
grant insert (id, project_id, conversation_id, external_session_id, model, cli_type, transcript_path, transcript_format,
              instruction, started_at) on agent_sessions to authenticated;
grant update (status, summary, transcript_path, duration_ms, completed_at, external_session_id) on agent_sessions to authenticated;
-- messages and tool usage are append-only for end users; the charge columns are the service's.
grant select on messages, tool_usages to authenticated;
grant insert (id, project_id, session_id, conversation_id, parent_message_id, user_id, role, message_type, content,
              metadata, model, duration_ms, token_count, cost_usd, commit_sha, cli_source) on messages to authenticated;
grant insert (id, project_id, session_id, message_id, tool_name, tool_action, input_data, output_data, files_affected,
              lines_added, lines_removed, duration_ms, is_error, error_message) on tool_usages to authenticated;
grant select on user_requests to authenticated;
grant insert (id, project_id, user_message_id, session_id, user_id, instruction, request_type, cli_type_used, model_used,
              started_at) on user_requests to authenticated;
grant update (is_completed, is_successful, result_metadata, error_message, completed_at) on user_requests to authenticated;
grant select, insert on commits to authenticated;
-- env_vars: never the ciphertext to end users (the service decrypts for the audited reveal).
grant select (id, project_id, key, key_id, value_hint, scope, environment, var_type, is_secret, description, created_by,
              created_at, updated_at) on env_vars to authenticated;
grant insert (id, project_id, key, value_enc, key_id, value_hint, scope, environment, var_type, is_secret, description,
              created_by) on env_vars to authenticated;
grant update (value_enc, key_id, value_hint, var_type, is_secret, description) on env_vars to authenticated;
grant delete on env_vars to authenticated;
grant select, insert, delete on service_connections to authenticated;
grant update (status, service_data, service_token_id, last_sync_at) on service_connections to authenticated;

-- service_tokens: the user's own, or a workspace's (members read, owners/admins write).
grant select (id, user_id, workspace_id, created_by, provider, name, key_id, token_hint, config, is_active, last_used_at,
              created_at, updated_at) on service_tokens to authenticated;
grant insert (id, user_id, workspace_id, created_by, provider, name, token_enc, key_id, token_hint, config, is_active)
  on service_tokens to authenticated;
grant delete on service_tokens to authenticated;
create policy service_tokens_select on service_tokens for select to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and is_workspace_member(workspace_id)));
create policy service_tokens_insert on service_tokens for insert to authenticated
  with check ((user_id = auth.uid() and workspace_id is null)
              or (workspace_id is not null and workspace_role_of(workspace_id) in ('owner', 'admin')));
create policy service_tokens_delete on service_tokens for delete to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and workspace_role_of(workspace_id) in ('owner', 'admin')));

-- secret_reveals: an end user's reveal records itself; users read their own reveals.
grant select, insert on secret_reveals to authenticated;
create policy secret_reveals_own on secret_reveals for all to authenticated
  using (actor_user_id = auth.uid()) with check (actor_user_id = auth.uid() and actor = 'user:' || auth.uid());

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
