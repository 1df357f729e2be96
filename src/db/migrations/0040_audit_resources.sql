-- Audit of storage objects, IDE resources and jobs (issue 19; docs/audit.md, "What is audited").
--
-- Decided per table, by what an operator must be able to answer later (who took money, who changed
-- where code runs or what it can reach, who destroyed data), against what is written so often that
-- one chained audit row per write would cost more than it tells:
--   * storage_objects: deletes only (`storage_object.deleted`). Uploads and overwrites are the hot
--     path of storage and carry their own record (uploaded_by, storage_usage); a delete is the one
--     irreversible act. Buckets and their quotas were already audited (0028).
--   * git_repositories: every change; the sealed credentials never enter an image (a change of them
--     is `git_repository.credentials_rotated`); sync bookkeeping is noise.
--   * deployments: who deployed what where (`deployment.created`), every status move
--     (`deployment.status_changed`, the superseded live one too), deletes. The build log is noise.
--   * jobs: coarse grain — the creation (the hold) and the one move that makes a job final (the
--     capture or release: `job.completed` / `failed` / `canceled` / `timed_out`). `processing` and
--     provider bookkeeping write nothing. Prompts, inputs and outputs stay out of the images.
--   * not audited: project files and versions (every save; the versions are the history, with their
--     author), editor sessions (cursor and presence), terminal sessions (output), code executions
--     (their money, when billed, is a usage event and ledger entries), code analyses (cached
--     results that expire).

alter table audit_log drop constraint audit_log_action_check;
alter table audit_log add constraint audit_log_action_check check (action in (
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
  'credits.granted', 'credits.adjusted', 'credits.refunded', 'credits.clawed_back',
  'storage_object.deleted',
  'git_repository.created', 'git_repository.updated', 'git_repository.credentials_rotated', 'git_repository.deleted',
  'deployment.created', 'deployment.status_changed', 'deployment.updated', 'deployment.deleted',
  'job.created', 'job.completed', 'job.failed', 'job.canceled', 'job.timed_out'
));

create or replace function audit_verb(entity text, op text, o jsonb, n jsonb) returns text language plpgsql immutable as $$
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
  elsif entity = 'git_repository' and o -> 'credentials_enc' is distinct from n -> 'credentials_enc' then return 'git_repository.credentials_rotated';
  elsif entity = 'deployment' and o -> 'status' is distinct from n -> 'status' then return 'deployment.status_changed';
  -- Jobs' update trigger fires only for the move into a final state: the verb is that state.
  elsif entity = 'job' then return 'job.' || (n ->> 'status');
  end if;
  return entity || '.updated';
end $$;

-- Storage objects: the delete only.
create trigger storage_objects_audit after delete on storage_objects
  for each row execute function audit_capture('storage_object', 'id', '', 'metadata');

-- Git repositories: everything but sync bookkeeping; the sealed credentials and their hint redacted.
create trigger git_repositories_audit after insert or delete on git_repositories
  for each row execute function audit_capture('git_repository', 'id', 'credentials_enc,credentials_hint', 'last_sync_at,sync_status');
create trigger git_repositories_audit_update after update on git_repositories for each row
  when ((to_jsonb(old) - '{updated_at,last_sync_at,sync_status}'::text[]) is distinct from (to_jsonb(new) - '{updated_at,last_sync_at,sync_status}'::text[]))
  execute function audit_capture('git_repository', 'id', 'credentials_enc,credentials_hint', 'last_sync_at,sync_status');

-- Deployments: everything but the build log (up to 1 MiB, appended while it builds).
create trigger deployments_audit after insert or delete on deployments
  for each row execute function audit_capture('deployment', 'id', '', 'logs');
create trigger deployments_audit_update after update on deployments for each row
  when ((to_jsonb(old) - '{updated_at,logs}'::text[]) is distinct from (to_jsonb(new) - '{updated_at,logs}'::text[]))
  execute function audit_capture('deployment', 'id', '', 'logs');

-- Jobs: the creation and the final move. A job's deletion only follows its user's (audited) one.
create trigger jobs_audit after insert on jobs
  for each row execute function audit_capture('job', 'id', '', 'input,prompt,image_url,output,result_url,metadata');
create trigger jobs_audit_update after update on jobs for each row
  when (old.status is distinct from new.status and new.status in ('completed', 'failed', 'canceled', 'timed_out'))
  execute function audit_capture('job', 'id', '', 'input,prompt,image_url,output,result_url,metadata');
