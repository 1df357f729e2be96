-- LLM gateway (seed 004, issue 14): upstream accounts with sealed credentials and health, one
-- record per relayed request (unique request id), and each account's carried fraction of a credit.
-- docs/gateway.md describes the hold → call → settle policy these tables record.

-- gateway_upstreams (004 upstream_accounts): credentials are sealed with the encryption key
-- (AES-256-GCM, bound to the row id) and never leave the repository.
create table gateway_upstreams (
  id                    text primary key,
  type                  text not null check (type in ('openai', 'anthropic')),
  name                  text not null default '' check (length(name) <= 255),
  base_url              text not null check (base_url ~ '^https?://' and length(base_url) <= 2048),
  credentials_enc       text not null,
  key_id                text not null,
  credentials_hint      text not null default '',
  models                text[] not null default '{*}',
  priority              integer not null default 1 check (priority between 0 and 1000),
  weight                integer not null default 100 check (weight between 1 and 1000),
  is_active             boolean not null default true,
  -- Health: closed (serving), open (cooling down until cooldown_until), half_open (one probe),
  -- disabled (the upstream refused its credential: 401/403; an operator re-enables it by PATCH).
  state                 text not null default 'closed' check (state in ('closed', 'open', 'half_open', 'disabled')),
  success_count         bigint not null default 0,
  error_count           bigint not null default 0,
  consecutive_failures  integer not null default 0,
  cooldown_until        timestamptz,
  last_error            text,
  last_error_at         timestamptz,
  last_success_at       timestamptz,
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);
create index gateway_upstreams_type_idx on gateway_upstreams (type, priority);
create trigger gateway_upstreams_updated_at before update on gateway_upstreams for each row execute function set_updated_at();
alter table gateway_upstreams enable row level security;

-- gateway_requests (004 usage_records): one row per request id, written with its hold before any
-- byte goes upstream and settled exactly once (status leaves 'pending' once, under a row lock).
create table gateway_requests (
  id                   text primary key,
  user_id              text not null references users (id) on delete cascade,
  workspace_id         text references workspaces (id) on delete cascade,
  api_key_id           text references api_keys (id) on delete set null,
  idempotency_key      text check (idempotency_key is null or length(idempotency_key) between 1 and 255),
  -- SHA-256 of the request (method, path, canonical body): a key reused for another request is refused.
  request_hash         text,
  endpoint             text not null,
  model                text not null,
  stream               boolean not null default false,
  status               text not null default 'pending' check (status in ('pending', 'completed', 'failed', 'aborted')),
  http_status          integer,
  upstream_id          text references gateway_upstreams (id) on delete set null,
  attempts             integer not null default 0,
  hold_id              text,
  held                 bigint not null default 0 check (held >= 0),
  input_tokens         bigint not null default 0,
  cached_input_tokens  bigint not null default 0,
  cache_write_tokens   bigint not null default 0,
  output_tokens        bigint not null default 0,
  reasoning_tokens     bigint not null default 0,
  -- Exact cost in micro-credits (1 credit = 1,000,000); `charged` is whole credits captured, the
  -- difference rides on gateway_carries (docs/gateway.md, "Exact costs").
  cost_micros          bigint not null default 0 check (cost_micros >= 0),
  charged              bigint not null default 0 check (charged >= 0),
  usage_source         text check (usage_source in ('provider', 'estimated', 'none')),
  latency_ms           integer,
  ttft_ms              integer,
  error                text,
  response             text,
  settled_at           timestamptz,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now()
);
create unique index gateway_requests_idem_idx on gateway_requests (user_id, idempotency_key) where idempotency_key is not null;
create index gateway_requests_user_idx on gateway_requests (user_id, created_at desc, id desc);
create index gateway_requests_created_idx on gateway_requests (created_at desc, id desc);
create index gateway_requests_pending_idx on gateway_requests (created_at) where status = 'pending';
create trigger gateway_requests_updated_at before update on gateway_requests for each row execute function set_updated_at();
alter table gateway_requests enable row level security;
grant select on gateway_requests to authenticated;
create policy gateway_requests_read_own on gateway_requests for select to authenticated using (user_id = auth.uid());

-- Each ledger account's running total of gateway cost in micro-credits. The whole credits captured
-- for it are always floor(total_micros / 1,000,000): a settlement adds its exact cost and captures
-- the whole credits that crossed, so the fraction carries and the charged total never drifts from
-- the exact sum by a credit or more (docs/gateway.md, "Exact costs").
create table gateway_carries (
  account_id    text primary key,
  total_micros  bigint not null default 0 check (total_micros >= 0),
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create trigger gateway_carries_updated_at before update on gateway_carries for each row execute function set_updated_at();
alter table gateway_carries enable row level security;
