-- Credits ledger: accounts (one per user, one per workspace pool), an append-only ledger, grants
-- (the buckets a balance is made of: class, expiry, priority), what each debit took from which
-- grant, and holds. Invariants (checked by `tally reconcile`):
--   account.balance = sum(ledger.amount) = sum(grants.remaining)
--   account.held    = sum(holds.amount where status = 'held'),  0 <= held <= balance
-- Only the owning role writes these tables; end users read their own rows. See docs/ledger.md.

create table credit_accounts (
  id             text primary key,
  user_id        text unique references users (id) on delete cascade,
  workspace_id   text unique references workspaces (id) on delete cascade,
  balance        bigint not null default 0,
  held           bigint not null default 0,
  total_credited bigint not null default 0,
  total_spent    bigint not null default 0,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  check ((user_id is null) <> (workspace_id is null)),
  check (held >= 0 and held <= balance)
) with (fillfactor = 70); -- room on each page for HOT updates: every movement rewrites its account row
-- The ledger's own writes set updated_at themselves; the trigger covers every other writer
-- (the WHEN test runs in C, so the hot path pays no trigger call).
create trigger credit_accounts_updated_at before update on credit_accounts for each row
  when (old.updated_at is not distinct from new.updated_at) execute function set_updated_at();

create table credit_grants (
  id             text primary key,
  account_id     text not null references credit_accounts (id) on delete cascade,
  user_id        text,
  workspace_id   text,
  class          text not null default 'default' check (class ~ '^[A-Za-z0-9_.-]{1,32}$'),
  source         text not null default 'grant' check (length(source) between 1 and 32),
  amount         bigint not null check (amount > 0),
  remaining      bigint not null check (remaining >= 0),
  priority       integer not null default 0,
  expires_at     timestamptz,
  expired_at     timestamptz,
  transaction_id text,
  metadata       jsonb not null default '{}'::jsonb,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
) with (fillfactor = 70);
-- No index mentions `remaining`: a debit changes only `remaining`, so its grant update stays HOT
-- (no index entries rewritten). Exhausted grants are filtered, not indexed away.
create index credit_grants_account_idx on credit_grants (account_id);
create index credit_grants_due_idx on credit_grants (expires_at) where expires_at is not null and expired_at is null;
-- The sign-up bonus is granted once per account, whatever happens upstream.
create unique index credit_grants_one_signup_bonus on credit_grants (account_id) where source = 'signup_bonus';
create trigger credit_grants_updated_at before update on credit_grants for each row
  when (old.updated_at is not distinct from new.updated_at) execute function set_updated_at();

create table credit_ledger (
  id            text primary key,
  account_id    text not null references credit_accounts (id) on delete cascade,
  user_id       text,
  workspace_id  text,
  type          text not null check (type in ('grant', 'debit', 'refund', 'adjustment', 'capture', 'expiry')),
  amount        bigint not null check (amount <> 0),
  balance_after bigint not null,
  reason        text check (length(reason) <= 500),
  metadata      jsonb not null default '{}'::jsonb,
  grant_id      text,
  hold_id       text,
  refund_of     text references credit_ledger (id),
  created_at    timestamptz not null default now()
);
create index credit_ledger_account_idx on credit_ledger (account_id, created_at desc, id desc);
create index credit_ledger_refund_of_idx on credit_ledger (refund_of) where refund_of is not null;

-- The ledger is append-only: history is corrected by new entries, never rewritten.
create function credit_ledger_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'credit_ledger is append-only' using errcode = '42501';
end $$;
create trigger credit_ledger_append_only before update or delete on credit_ledger
  for each row execute function credit_ledger_append_only();

-- Which grants a debit, capture, negative adjustment or expiry took its credits from (refunds
-- give them back to the same grants).
create table credit_allocations (
  transaction_id text not null references credit_ledger (id) on delete cascade,
  grant_id       text not null references credit_grants (id) on delete cascade,
  amount         bigint not null check (amount > 0),
  -- Order within the transaction (consumption order), so a refund can give back last-taken first.
  position       smallint not null default 0,
  primary key (transaction_id, grant_id)
);
create index credit_allocations_grant_idx on credit_allocations (grant_id);

create table credit_holds (
  id             text primary key,
  account_id     text not null references credit_accounts (id) on delete cascade,
  user_id        text,
  workspace_id   text,
  amount         bigint not null check (amount > 0),
  captured       bigint check (captured >= 0 and captured <= amount),
  status         text not null default 'held' check (status in ('held', 'captured', 'released', 'expired')),
  expires_at     timestamptz not null,
  transaction_id text references credit_ledger (id),
  metadata       jsonb not null default '{}'::jsonb,
  resolved_at    timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  check ((status = 'held') = (resolved_at is null))
);
create index credit_holds_account_idx on credit_holds (account_id, created_at desc, id desc);
create index credit_holds_due_idx on credit_holds (expires_at) where status = 'held';
create trigger credit_holds_updated_at before update on credit_holds for each row
  when (old.updated_at is not distinct from new.updated_at) execute function set_updated_at();

-- Every existing user and workspace gets its account.
insert into credit_accounts (id, user_id) select 'acc_u_' || id, id from users;
insert into credit_accounts (id, workspace_id) select 'acc_w_' || id, id from workspaces;

-- Row-level security: end users read their own (and their workspaces') money, and write none of it.
alter table credit_accounts enable row level security;
alter table credit_grants enable row level security;
alter table credit_ledger enable row level security;
alter table credit_allocations enable row level security;
alter table credit_holds enable row level security;

grant select on credit_accounts, credit_grants, credit_ledger, credit_holds to authenticated;
create policy credit_accounts_read_own on credit_accounts for select to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and is_workspace_member(workspace_id)));
create policy credit_grants_read_own on credit_grants for select to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and is_workspace_member(workspace_id)));
create policy credit_ledger_read_own on credit_ledger for select to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and is_workspace_member(workspace_id)));
create policy credit_holds_read_own on credit_holds for select to authenticated
  using (user_id = auth.uid() or (workspace_id is not null and is_workspace_member(workspace_id)));
-- credit_allocations: no grant, no policy — internal bookkeeping.

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
