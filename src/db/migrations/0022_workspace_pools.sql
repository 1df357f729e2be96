-- Issue 17 (5): workspace pools pay for jobs, usage events and holds, with the acting member
-- recorded, and an optional per-member spend cap (docs/ledger.md, "Workspace pools").

-- Who spent from a pool: the member a debit, hold, capture or usage debit was made for. Null for
-- user accounts and for the service spending a pool on its own behalf. No foreign key: the ledger
-- is append-only, and history keeps the id of a user who was later deleted.
alter table credit_ledger add column member_id text;
alter table credit_holds add column member_id text;
-- What a member's cap counts: their debits and captures on the pool since a period start, and
-- their open holds.
create index credit_ledger_member_idx on credit_ledger (account_id, member_id, created_at)
  where member_id is not null;
create index credit_holds_member_idx on credit_holds (account_id, member_id)
  where member_id is not null and status = 'held';

-- A job or usage event paid by a pool: user_id is the member who ran it, workspace_id the pool.
alter table jobs add column workspace_id text references workspaces (id) on delete set null;
create index jobs_workspace_idx on jobs (workspace_id, created_at desc, id desc) where workspace_id is not null;
alter table usage_events add column workspace_id text references workspaces (id) on delete set null;
create index usage_events_workspace_idx on usage_events (workspace_id, created_at desc, id desc) where workspace_id is not null;

-- A member's spend cap on a pool. Keyed by (workspace, user), not by the membership row: leaving
-- and re-joining the workspace keeps the cap (and the spend it counts, which is the ledger's).
create table workspace_spend_caps (
  workspace_id  text not null references workspaces (id) on delete cascade,
  user_id       text not null references users (id) on delete cascade,
  amount        bigint not null check (amount >= 0 and amount <= 1000000000000),
  -- 'month': the UTC calendar month (what Stripe's and OpenAI's monthly limits use); 'lifetime': ever.
  period        text not null check (period in ('month', 'lifetime')),
  set_by        text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (workspace_id, user_id)
);
create trigger workspace_spend_caps_updated_at before update on workspace_spend_caps for each row execute function set_updated_at();
alter table workspace_spend_caps enable row level security;

-- End users: the member reads their own cap, owners and admins read all of the workspace's. Owners
-- set anyone's but their own; admins set members' and viewers' (never an admin's, the owner's, or
-- their own). So no member can lift or reset their own cap.
grant select, insert, delete on workspace_spend_caps to authenticated;
grant update (amount, period, set_by) on workspace_spend_caps to authenticated;
create policy workspace_spend_caps_select on workspace_spend_caps for select to authenticated
  using (user_id = auth.uid() or workspace_role_of(workspace_id) in ('owner', 'admin'));
create policy workspace_spend_caps_insert on workspace_spend_caps for insert to authenticated
  with check (
    user_id <> auth.uid()
    and (workspace_role_of(workspace_id) = 'owner'
         or (workspace_role_of(workspace_id) = 'admin'
             and not exists (select 1 from workspace_members m where m.workspace_id = workspace_spend_caps.workspace_id
                             and m.user_id = workspace_spend_caps.user_id and m.role in ('owner', 'admin'))))
  );
create policy workspace_spend_caps_update on workspace_spend_caps for update to authenticated
  using (
    user_id <> auth.uid()
    and (workspace_role_of(workspace_id) = 'owner'
         or (workspace_role_of(workspace_id) = 'admin'
             and not exists (select 1 from workspace_members m where m.workspace_id = workspace_spend_caps.workspace_id
                             and m.user_id = workspace_spend_caps.user_id and m.role in ('owner', 'admin'))))
  )
  with check (user_id <> auth.uid());
create policy workspace_spend_caps_delete on workspace_spend_caps for delete to authenticated
  using (
    user_id <> auth.uid()
    and (workspace_role_of(workspace_id) = 'owner'
         or (workspace_role_of(workspace_id) = 'admin'
             and not exists (select 1 from workspace_members m where m.workspace_id = workspace_spend_caps.workspace_id
                             and m.user_id = workspace_spend_caps.user_id and m.role in ('owner', 'admin'))))
  );
