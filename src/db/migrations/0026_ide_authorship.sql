-- The IDE resources' authorship cannot be forged under row-level security (docs/ide.md): an end
-- user inserts sessions and runs only as themself and names only themself as an analysis's author
-- or a deployment's deployer; an editor session is changed or deleted only by its own user. The
-- service (the owning role) still acts for any member it names.
drop policy editor_sessions_insert on editor_sessions;
drop policy editor_sessions_update on editor_sessions;
drop policy editor_sessions_delete on editor_sessions;
drop policy terminal_sessions_insert on terminal_sessions;
drop policy code_executions_insert on code_executions;
drop policy code_analyses_insert on code_analyses;
drop policy git_repositories_insert on git_repositories;
drop policy deployments_insert on deployments;

do $$
declare
  writable text := 'exists (select 1 from projects p where p.id = project_id and (p.user_id = auth.uid() or '
                || '(p.workspace_id is not null and workspace_role_of(p.workspace_id) in (''owner'', ''admin'', ''member''))))';
begin
  execute format('create policy editor_sessions_insert on editor_sessions for insert to authenticated with check (user_id = auth.uid() and %s)', writable);
  execute format('create policy editor_sessions_update on editor_sessions for update to authenticated using (user_id = auth.uid() and %s) with check (user_id = auth.uid() and %s)', writable, writable);
  execute format('create policy editor_sessions_delete on editor_sessions for delete to authenticated using (user_id = auth.uid() and %s)', writable);
  execute format('create policy terminal_sessions_insert on terminal_sessions for insert to authenticated with check (user_id = auth.uid() and %s)', writable);
  execute format('create policy code_executions_insert on code_executions for insert to authenticated with check (user_id = auth.uid() and %s)', writable);
  execute format('create policy code_analyses_insert on code_analyses for insert to authenticated with check (created_by = auth.uid() and %s)', writable);
  execute format('create policy git_repositories_insert on git_repositories for insert to authenticated with check (created_by = auth.uid() and %s)', writable);
  execute format('create policy deployments_insert on deployments for insert to authenticated with check (deployed_by = auth.uid() and %s)', writable);
end $$;
