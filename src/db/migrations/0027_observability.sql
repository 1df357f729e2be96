-- Observability (issue 19, second half; docs/observability.md): what the API answered, what failed,
-- and how fast, for the operator. Service only: row-level security is on and no end-user role holds
-- any grant, so only the owning role (the service key's requests, the scheduler) reads or writes.
--
-- api_logs and error_logs are partitioned by month on created_at (declarative partitioning, on
-- PostgreSQL and on PGlite alike — PGlite is PostgreSQL 17): retention drops a whole month at once
-- instead of deleting row by row. The scheduler creates the coming months' partitions ahead
-- (observability.partitions.ts); the default partition catches a row no monthly one covers yet
-- (a clock far ahead, a scheduler that has not run), so an insert never fails for want of one.
-- A partition's primary key must contain the partition key: (request_id, created_at).
-- caller_kind 'unknown': routes that authenticate on their own (the gateway's relay) or not at all
-- (static files, /metrics), where the wrapper resolved no principal.

-- One row per answered request, written off the request's path in batches. Never a body, a header
-- value with a secret, or a query string: route template, path (scrubbed), status, duration, who.
create table api_logs (
  request_id      text not null,
  created_at      timestamptz not null default now(),
  method          text not null check (length(method) <= 16),
  route           text check (length(route) <= 512),
  path            text not null check (length(path) <= 2048),
  status          smallint not null check (status between 100 and 599),
  duration_ms     double precision not null check (duration_ms >= 0),
  caller_kind     text not null check (caller_kind in ('anon', 'service', 'user', 'unknown')),
  caller_id       text check (length(caller_id) <= 255),
  api_key_id      text check (length(api_key_id) <= 255),
  request_bytes   integer check (request_bytes >= 0),
  response_bytes  integer check (response_bytes >= 0),
  ip              text check (length(ip) <= 64),
  user_agent      text check (length(user_agent) <= 128),
  updated_at      timestamptz not null default now(),
  primary key (request_id, created_at)
) partition by range (created_at);
create index api_logs_created_idx on api_logs (created_at desc, request_id desc);
create index api_logs_route_idx on api_logs (route, created_at desc);
create index api_logs_caller_idx on api_logs (caller_id, created_at desc) where caller_id is not null;
create index api_logs_status_idx on api_logs (status, created_at desc);
create trigger api_logs_updated_at before update on api_logs for each row execute function set_updated_at();
alter table api_logs enable row level security;
create table api_logs_default partition of api_logs default;
alter table api_logs_default enable row level security;

-- One row per 5xx or unhandled error (at most one per request), grouped by fingerprint when read:
-- each occurrence keeps its request id and stack, and dropping a month drops its occurrences with
-- it, so a group's count and first/last seen are always those of the rows kept.
create table error_logs (
  request_id   text not null,
  created_at   timestamptz not null default now(),
  fingerprint  text not null check (fingerprint ~ '^[0-9a-f]{16}$'),
  method       text not null check (length(method) <= 16),
  route        text check (length(route) <= 512),
  status       smallint not null check (status between 500 and 599),
  error_class  text not null check (length(error_class) <= 200),
  message      text not null check (length(message) <= 2000),
  stack        text check (length(stack) <= 8000),
  caller_kind  text not null check (caller_kind in ('anon', 'service', 'user', 'unknown')),
  caller_id    text check (length(caller_id) <= 255),
  updated_at   timestamptz not null default now(),
  primary key (request_id, created_at)
) partition by range (created_at);
create index error_logs_fingerprint_idx on error_logs (fingerprint, created_at desc);
create index error_logs_created_idx on error_logs (created_at desc, request_id desc);
create trigger error_logs_updated_at before update on error_logs for each row execute function set_updated_at();
alter table error_logs enable row level security;
create table error_logs_default partition of error_logs default;
alter table error_logs_default enable row level security;

-- Route latency per minute, computed from api_logs by the scheduler: an upsert per (minute, method,
-- route), so computing a minute again (late rows, a second process) replaces it, never doubles it.
-- Small (one row per route and minute): a plain table whose retention deletes rows.
create table performance_metrics (
  minute       timestamptz not null,
  method       text not null check (length(method) <= 16),
  route        text not null check (length(route) <= 512),
  requests     integer not null check (requests > 0),
  errors       integer not null check (errors >= 0),
  p50_ms       double precision not null,
  p95_ms       double precision not null,
  p99_ms       double precision not null,
  max_ms       double precision not null,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (minute, method, route)
);
create index performance_metrics_route_idx on performance_metrics (route, minute desc);
create trigger performance_metrics_updated_at before update on performance_metrics for each row execute function set_updated_at();
alter table performance_metrics enable row level security;
