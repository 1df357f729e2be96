-- Per-key gateway limits (issue 14): a model allow-list, requests and tokens per minute, requests in
-- flight, and the credit budget (credit_budget/credits_used, in api_keys since 0001, now enforced).
-- Every limit is null = unlimited. Checked under the key's row lock in the transaction that takes
-- the request's hold, so concurrent requests on one key can never pass a limit together
-- (docs/gateway.md, "Key limits").
alter table api_keys
  add column models          text[] check (models is null or cardinality(models) between 1 and 64),
  add column rpm_limit       integer check (rpm_limit is null or rpm_limit > 0),
  add column tpm_limit       bigint check (tpm_limit is null or tpm_limit > 0),
  add column max_concurrency integer check (max_concurrency is null or max_concurrency > 0);

-- An end user sees and may set these on a key it creates (a limit only makes a key weaker); only the
-- service changes them afterwards (the 0001 rule: an end user never raises a budget).
grant select (models, rpm_limit, tpm_limit, max_concurrency) on api_keys to authenticated;
grant insert (models, rpm_limit, tpm_limit, max_concurrency, credit_budget) on api_keys to authenticated;

-- What a request reserved against its key's tokens-per-minute window, trued up when it settles.
alter table gateway_requests
  add column window_start    timestamptz,
  add column reserved_tokens bigint not null default 0 check (reserved_tokens >= 0),
  -- The exact cost beyond the hold that could not be charged (the hold is what the payer agreed to):
  -- never expected, since the hold bounds every billed part; kept visible rather than forgiven silently.
  add column uncharged_micros bigint not null default 0 check (uncharged_micros >= 0),
  -- While its process lives it renews this lease; the reaper settles only requests whose lease has
  -- run out (a live stream may run for longer than any fixed age).
  add column lease_until     timestamptz;
create index gateway_requests_lease_idx on gateway_requests (lease_until) where status = 'pending';
-- In flight and held per key: the concurrency and budget checks count these.
create index gateway_requests_key_pending_idx on gateway_requests (api_key_id) where status = 'pending';

-- Requests and tokens per key per UTC minute. Limits are judged on a sliding window: the previous
-- minute weighted by the part of it still inside the last 60 seconds, plus the current one.
create table gateway_key_windows (
  api_key_id    text not null references api_keys (id) on delete cascade,
  window_start  timestamptz not null,
  requests      integer not null default 0 check (requests >= 0),
  tokens        bigint not null default 0 check (tokens >= 0),
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (api_key_id, window_start)
);
create trigger gateway_key_windows_updated_at before update on gateway_key_windows for each row execute function set_updated_at();
alter table gateway_key_windows enable row level security;
