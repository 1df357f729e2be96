-- Terminal sessions and code executions are their author's (attacker review R5): before this, any
-- writer of a project could rewrite another member's command and output, forge a run's stdout and
-- exit code, end or delete them (0025's update/delete policies asked only for a writer's role).
--
-- Now, under row-level security as in the service (docs/ide.md, "Ownership and access"):
-- * the row's own user changes and deletes it, like any writer of the project it is in;
-- * the project's owner (a personal project) or the workspace's owner/admin may end another
--   member's session (status killed) or cancel a run (status canceled) and delete it — moderation —
--   but never write a runner's fields (command, output, stdout, exit code …): the trigger below
--   refuses any other change a request role makes to a row it did not author;
-- * a run the service queued in nobody's name (user_id null) is the service's to report.
drop policy terminal_sessions_update on terminal_sessions;
drop policy terminal_sessions_delete on terminal_sessions;
drop policy code_executions_update on code_executions;
drop policy code_executions_delete on code_executions;

do $$
declare
  writable text := 'exists (select 1 from projects p where p.id = project_id and (p.user_id = auth.uid() or '
                || '(p.workspace_id is not null and workspace_role_of(p.workspace_id) in (''owner'', ''admin'', ''member''))))';
  manages text := 'exists (select 1 from projects p where p.id = project_id and (p.user_id = auth.uid() or '
                || '(p.workspace_id is not null and workspace_role_of(p.workspace_id) in (''owner'', ''admin''))))';
  t text;
  own text;
begin
  foreach t in array array['terminal_sessions', 'code_executions'] loop
    own := format('((user_id = auth.uid() and %s) or %s)', writable, manages);
    execute format('create policy %I on %I for update to authenticated using (%s) with check (%s)', t || '_update', t, own, own);
    execute format('create policy %I on %I for delete to authenticated using (%s)', t || '_delete', t, own);
  end loop;
end $$;

-- What a request role may change in a row someone else authored: only the move that ends it (and
-- the stamps that move sets). Everything else stays exactly as it was, column by column — so a
-- column added later is protected without touching this function.
create function ide_foreign_row_guard() returns trigger language plpgsql set search_path from current as $$
declare
  ending text := case tg_table_name when 'terminal_sessions' then 'killed' else 'canceled' end;
  stamps text[] := case tg_table_name when 'terminal_sessions' then array['status', 'ended_at', 'duration_ms', 'updated_at']
                                      else array['status', 'finished_at', 'updated_at'] end;
begin
  if current_user in ('anon', 'authenticated') and old.user_id is distinct from auth.uid() then
    if new.status is distinct from ending or (to_jsonb(new) - stamps) is distinct from (to_jsonb(old) - stamps) then
      raise exception 'only the author of this row (or the service) may change it; others may only end it (status %)', ending
        using errcode = '42501';
    end if;
  end if;
  return new;
end $$;
create trigger terminal_sessions_foreign_row_guard before update on terminal_sessions
  for each row execute function ide_foreign_row_guard();
create trigger code_executions_foreign_row_guard before update on code_executions
  for each row execute function ide_foreign_row_guard();

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
