-- `tally import` (issue 20, docs/import.md): moving an app that runs one of the seeds' designs onto
-- Tally. Four tables, all service-only but the history, which its owner may read:
--   import_runs              one row per invocation: what was asked, how it ended, its report;
--   import_cursors           per source and source table, the last key imported (what --resume continues from);
--   import_map               per source row, the Tally row it became: a re-run finds it and imports nothing twice;
--   imported_credit_history  the source's credit transactions, kept read-only beside the ledger, each
--                            linked to the opening entry that carried its account's balance over.
-- `source` is the source's fingerprint (a URL without credentials and its schema, or a file path),
-- so two different sources never share cursors or mappings.

create table import_runs (
  id          text primary key,
  source      text not null check (length(source) between 1 and 1000),
  shape       text not null check (shape ~ '^[a-z0-9-]{1,32}$'),
  status      text not null default 'running' check (status in ('running', 'completed', 'failed', 'refused')),
  dry_run     boolean not null default false,
  strict      boolean not null default false,
  resumed     boolean not null default false,
  report      jsonb,
  error       text check (length(error) <= 4000),
  started_at  timestamptz not null default now(),
  finished_at timestamptz,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  check ((status = 'running') = (finished_at is null))
);
create index import_runs_source_idx on import_runs (source, started_at desc);
create trigger import_runs_updated_at before update on import_runs for each row execute function set_updated_at();
alter table import_runs enable row level security;

create table import_cursors (
  source        text not null check (length(source) between 1 and 1000),
  source_table  text not null check (length(source_table) between 1 and 128),
  shape         text not null check (shape ~ '^[a-z0-9-]{1,32}$'),
  -- The keyset position: rows with a key above it are still to do (text: uuids, bigints as text
  -- compared by the source in its own type).
  last_key      text,
  rows_read     bigint not null default 0 check (rows_read >= 0),
  rows_imported bigint not null default 0 check (rows_imported >= 0),
  rows_skipped  bigint not null default 0 check (rows_skipped >= 0),
  done          boolean not null default false,
  run_id        text references import_runs (id) on delete set null,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (source, source_table)
);
create trigger import_cursors_updated_at before update on import_cursors for each row execute function set_updated_at();
alter table import_cursors enable row level security;

create table import_map (
  source       text not null check (length(source) between 1 and 1000),
  source_table text not null check (length(source_table) between 1 and 128),
  source_id    text not null check (length(source_id) between 1 and 255),
  target_table text not null check (length(target_table) between 1 and 128),
  target_id    text not null check (length(target_id) between 1 and 255),
  -- What the report compares later without reading the source again (an account's source balance,
  -- its opening entry).
  facts        jsonb not null default '{}'::jsonb,
  run_id       text references import_runs (id) on delete set null,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (source, source_table, source_id)
);
create index import_map_target_idx on import_map (target_table, target_id);
create trigger import_map_updated_at before update on import_map for each row execute function set_updated_at();
alter table import_map enable row level security;

create table imported_credit_history (
  id               text primary key,
  source           text not null check (length(source) between 1 and 1000),
  source_table     text not null check (length(source_table) between 1 and 128),
  source_id        text not null check (length(source_id) between 1 and 255),
  account_id       text not null references credit_accounts (id) on delete cascade,
  user_id          text references users (id) on delete cascade,
  -- The entry that carried the account's balance over (null: the source balance was zero, so there
  -- is none); this row's amount never moved Tally's balance.
  opening_entry_id text references credit_ledger (id),
  type             text not null check (length(type) between 1 and 64),
  amount           bigint not null,
  reason           text check (length(reason) <= 2000),
  metadata         jsonb not null default '{}'::jsonb,
  occurred_at      timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  unique (source, source_table, source_id)
);
create index imported_credit_history_account_idx on imported_credit_history (account_id, occurred_at desc, id desc);
create index imported_credit_history_opening_idx on imported_credit_history (opening_entry_id) where opening_entry_id is not null;
create trigger imported_credit_history_updated_at before update on imported_credit_history for each row execute function set_updated_at();
alter table imported_credit_history enable row level security;
-- A user reads their own history, as they read their own ledger; nobody but the owner writes it.
grant select on imported_credit_history to authenticated;
create policy imported_credit_history_read_own on imported_credit_history for select to authenticated using (user_id = auth.uid());
