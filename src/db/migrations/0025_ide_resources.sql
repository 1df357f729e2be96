-- Seed 002's cloud-IDE project resources (issue 19, first half; docs/ide.md):
-- editor_sessions, terminal_sessions, code_executions, code_analyses, git_repositories, deployments.
--
-- Every row belongs to a project and follows it: owned by the project's user or workspace, read by
-- its members, written by owner/admin/member (viewers read only), checked by the service and again
-- by row-level security. Deleting a project deletes all of them (on delete cascade); deleting a
-- user deletes the sessions and executions they ran (theirs alone) and keeps analyses, repositories
-- and deployments with the author set to null. Status columns carry the closed unions declared in
-- src/modules/ide/ide.lifecycles.ts (checked again here).

-- Editor sessions: who has which files open where. A closed session is kept (closed_at); a user has
-- at most one open session per project (the seed's unique (user_id, project_id), for open ones).
create table editor_sessions (
  id              text primary key,
  project_id      text not null references projects (id) on delete cascade,
  user_id         text not null references users (id) on delete cascade,
  status          text not null default 'open' check (status in ('open', 'closed')),
  open_files      jsonb not null default '[]' check (jsonb_typeof(open_files) = 'array'),
  active_file_id  text references project_files (id) on delete set null,
  layout_state    jsonb not null default '{}' check (jsonb_typeof(layout_state) = 'object'),
  last_active_at  timestamptz not null default now(),
  closed_at       timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  check ((status = 'closed') = (closed_at is not null))
);
create unique index editor_sessions_one_open on editor_sessions (user_id, project_id) where status = 'open';
create index editor_sessions_project_idx on editor_sessions (project_id, created_at desc);
create index editor_sessions_user_idx on editor_sessions (user_id);
create trigger editor_sessions_updated_at before update on editor_sessions for each row execute function set_updated_at();

-- Terminal sessions: the seed's one command with its output, exit code and duration, as a session
-- with a shell, a working directory and a lifecycle.
create table terminal_sessions (
  id                 text primary key,
  project_id         text not null references projects (id) on delete cascade,
  user_id            text not null references users (id) on delete cascade,
  shell              text check (length(shell) <= 255),
  working_directory  text check (length(working_directory) <= 4096),
  command            text check (length(command) <= 65536),
  status             text not null default 'running' check (status in ('running', 'exited', 'killed', 'failed')),
  output             text check (length(output) <= 1048576),
  exit_code          integer,
  duration_ms        integer check (duration_ms >= 0),
  started_at         timestamptz not null default now(),
  ended_at           timestamptz,
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  check ((status = 'running') = (ended_at is null))
);
create index terminal_sessions_project_idx on terminal_sessions (project_id, created_at desc);
create index terminal_sessions_user_idx on terminal_sessions (user_id, created_at desc);
create trigger terminal_sessions_updated_at before update on terminal_sessions for each row execute function set_updated_at();

-- Code executions (the seed's Judge0 runs): source inline or a file version, the run's outputs,
-- time and memory. `status_detail` keeps the runner's own words ("Wrong Answer"); `status` is ours.
create table code_executions (
  id                 text primary key,
  project_id         text not null references projects (id) on delete cascade,
  user_id            text references users (id) on delete cascade,
  language           text not null check (length(language) between 1 and 64),
  source_code        text check (length(source_code) <= 1048576),
  file_version_id    text references project_file_versions (id) on delete set null,
  stdin              text check (length(stdin) <= 1048576),
  stdout             text check (length(stdout) <= 1048576),
  stderr             text check (length(stderr) <= 1048576),
  compile_output     text check (length(compile_output) <= 1048576),
  status             text not null default 'queued'
                     check (status in ('queued', 'running', 'completed', 'failed', 'timed_out', 'canceled')),
  status_detail      text check (length(status_detail) <= 255),
  exit_code          integer,
  execution_time_ms  numeric check (execution_time_ms >= 0),
  memory_kb          integer check (memory_kb >= 0),
  external_token     text check (length(external_token) <= 255),
  started_at         timestamptz,
  finished_at        timestamptz,
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now()
);
create index code_executions_project_idx on code_executions (project_id, created_at desc);
create index code_executions_user_idx on code_executions (user_id, created_at desc);
create trigger code_executions_updated_at before update on code_executions for each row execute function set_updated_at();

-- Code analyses: an AI's findings on a file, until expires_at (the scheduler's sweep deletes them).
create table code_analyses (
  id             text primary key,
  project_id     text not null references projects (id) on delete cascade,
  file_path      text not null check (length(file_path) between 1 and 1024),
  analysis_type  text not null check (analysis_type in ('explain', 'complexity', 'security', 'performance')),
  result         jsonb not null,
  model          text check (length(model) <= 255),
  created_by     text references users (id) on delete set null,
  expires_at     timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);
create index code_analyses_project_idx on code_analyses (project_id, created_at desc);
create index code_analyses_file_idx on code_analyses (project_id, file_path);
create index code_analyses_expires_idx on code_analyses (expires_at) where expires_at is not null;
create trigger code_analyses_updated_at before update on code_analyses for each row execute function set_updated_at();

-- Git repositories: one per project (the seed's unique project_id). Credentials (a deploy key or
-- token) are sealed with SecretBox and bound to the row id (docs/secrets.md); no end user may read
-- the ciphertext column, and the API never returns it.
create table git_repositories (
  id                text primary key,
  project_id        text not null unique references projects (id) on delete cascade,
  provider          text not null check (provider in ('github', 'gitlab', 'bitbucket')),
  repo_url          text not null check (length(repo_url) between 1 and 2048),
  repo_full_name    text check (length(repo_full_name) <= 255),
  default_branch    text not null default 'main' check (length(default_branch) between 1 and 255),
  last_sync_at      timestamptz,
  sync_status       text check (sync_status in ('idle', 'syncing', 'error')),
  credentials_enc   text,
  key_id            text,
  credentials_hint  text,
  created_by        text references users (id) on delete set null,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  check ((credentials_enc is null) = (key_id is null))
);
create trigger git_repositories_updated_at before update on git_repositories for each row execute function set_updated_at();

-- Deployments: at most one in flight (pending/building/deploying) and at most one live (success)
-- per project and environment — unique partial indexes, so parallel requests cannot both win.
-- A newer success supersedes the live one in the same transaction.
create table deployments (
  id             text primary key,
  project_id     text not null references projects (id) on delete cascade,
  environment    text not null check (environment in ('development', 'staging', 'production')),
  status         text not null default 'pending'
                 check (status in ('pending', 'building', 'deploying', 'success', 'failed', 'canceled', 'superseded')),
  commit_sha     text check (length(commit_sha) <= 64),
  branch         text check (length(branch) <= 255),
  deploy_url     text check (length(deploy_url) <= 2048),
  logs           text check (length(logs) <= 1048576),
  logs_url       text check (length(logs_url) <= 2048),
  build_time_ms  integer check (build_time_ms >= 0),
  deployed_by    text references users (id) on delete set null,
  deployed_at    timestamptz,
  finished_at    timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);
create unique index deployments_one_in_flight on deployments (project_id, environment)
  where status in ('pending', 'building', 'deploying');
create unique index deployments_one_live on deployments (project_id, environment) where status = 'success';
create index deployments_project_idx on deployments (project_id, environment, created_at desc);
create trigger deployments_updated_at before update on deployments for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Row-level security: the projects policy decides what a member sees (a stranger's project is not
-- there); writes need a writer's role on the project. Column grants keep ids, owners and
-- ciphertexts out of reach of updates.
-- ---------------------------------------------------------------------------------------------
alter table editor_sessions enable row level security;
alter table terminal_sessions enable row level security;
alter table code_executions enable row level security;
alter table code_analyses enable row level security;
alter table git_repositories enable row level security;
alter table deployments enable row level security;

do $$
declare
  t text;
  readable text := 'exists (select 1 from projects p where p.id = project_id)';
  writable text := 'exists (select 1 from projects p where p.id = project_id and (p.user_id = auth.uid() or '
                || '(p.workspace_id is not null and workspace_role_of(p.workspace_id) in (''owner'', ''admin'', ''member''))))';
begin
  foreach t in array array['editor_sessions', 'terminal_sessions', 'code_executions', 'code_analyses', 'git_repositories', 'deployments'] loop
    execute format('create policy %I on %I for select to authenticated using (%s)', t || '_select', t, readable);
    execute format('create policy %I on %I for insert to authenticated with check (%s)', t || '_insert', t, writable);
    execute format('create policy %I on %I for update to authenticated using (%s) with check (%s)', t || '_update', t, writable, writable);
    execute format('create policy %I on %I for delete to authenticated using (%s)', t || '_delete', t, writable);
  end loop;
end $$;

grant select, delete on editor_sessions, terminal_sessions, code_executions, code_analyses, deployments to authenticated;
grant insert (id, project_id, user_id, status, open_files, active_file_id, layout_state, last_active_at) on editor_sessions to authenticated;
grant update (status, open_files, active_file_id, layout_state, last_active_at, closed_at) on editor_sessions to authenticated;
grant insert (id, project_id, user_id, shell, working_directory, command, status, output, started_at) on terminal_sessions to authenticated;
grant update (working_directory, command, status, output, exit_code, duration_ms, ended_at) on terminal_sessions to authenticated;
grant insert (id, project_id, user_id, language, source_code, file_version_id, stdin, status, external_token) on code_executions to authenticated;
grant update (status, status_detail, stdout, stderr, compile_output, exit_code, execution_time_ms, memory_kb, external_token,
              started_at, finished_at) on code_executions to authenticated;
grant insert (id, project_id, file_path, analysis_type, result, model, created_by, expires_at) on code_analyses to authenticated;
grant insert (id, project_id, environment, status, commit_sha, branch, logs_url, deployed_by) on deployments to authenticated;
grant update (status, deploy_url, logs, logs_url, build_time_ms, deployed_at, finished_at) on deployments to authenticated;
-- The ciphertext is not selectable by end users at all (the service reads it for sync jobs).
grant select (id, project_id, provider, repo_url, repo_full_name, default_branch, last_sync_at, sync_status, key_id,
              credentials_hint, created_by, created_at, updated_at) on git_repositories to authenticated;
grant insert (id, project_id, provider, repo_url, repo_full_name, default_branch, sync_status, credentials_enc, key_id,
              credentials_hint, created_by) on git_repositories to authenticated;
grant update (repo_url, repo_full_name, default_branch, last_sync_at, sync_status, credentials_enc, key_id, credentials_hint)
  on git_repositories to authenticated;
grant delete on git_repositories to authenticated;
