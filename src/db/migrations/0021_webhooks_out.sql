-- Outgoing webhooks (issue 18; docs/webhooks-out.md): Tally tells the app what happened, signed
-- per the Standard Webhooks spec and delivered at least once.
--
-- webhook_endpoints: where to deliver, which event types, and the signing secret (sealed with
-- the encryption key, aad = the row id; shown once). During a rotation the previous secret signs
-- too, until previous_secret_expires_at. failing_since marks the first failure since the last
-- success: an endpoint failing for longer than the configured window is disabled.
create table webhook_endpoints (
  id                          text primary key,
  workspace_id                text references workspaces (id) on delete cascade,
  url                         text not null check (url ~ '^https?://' and length(url) <= 2048),
  description                 text check (length(description) <= 500),
  event_types                 text[] not null check (cardinality(event_types) between 1 and 64),
  secret_enc                  text not null,
  previous_secret_enc         text,
  previous_secret_expires_at  timestamptz,
  key_id                      text not null,
  is_active                   boolean not null default true,
  disabled_reason             text check (length(disabled_reason) <= 500),
  failing_since               timestamptz,
  created_at                  timestamptz not null default now(),
  updated_at                  timestamptz not null default now(),
  check ((previous_secret_enc is null) = (previous_secret_expires_at is null))
);
create index webhook_endpoints_active_idx on webhook_endpoints (is_active) where is_active;
create trigger webhook_endpoints_updated_at before update on webhook_endpoints for each row execute function set_updated_at();
alter table webhook_endpoints enable row level security;

-- webhook_messages: the outbox. A message is written in the same transaction as the change it
-- reports (no event without its change, no change without its event) — when an endpoint wants it.
-- Its id is the `webhook-id` every delivery of it carries: the receiver's dedupe key.
create table webhook_messages (
  id            text primary key,
  type          text not null check (type ~ '^[a-z_]+\.[a-z_]+$'),
  user_id       text references users (id) on delete set null,
  workspace_id  text references workspaces (id) on delete set null,
  payload       jsonb not null,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create index webhook_messages_created_idx on webhook_messages (created_at desc, id desc);
create trigger webhook_messages_updated_at before update on webhook_messages for each row execute function set_updated_at();
alter table webhook_messages enable row level security;

-- webhook_deliveries: one per (message, endpoint), with the log of its latest attempt.
create table webhook_deliveries (
  id                text primary key,
  message_id        text not null references webhook_messages (id) on delete cascade,
  endpoint_id       text not null references webhook_endpoints (id) on delete cascade,
  status            text not null default 'pending' check (status in ('pending', 'succeeded', 'failed', 'canceled')),
  attempts          integer not null default 0 check (attempts >= 0),
  last_status_code  integer,
  last_error        text check (length(last_error) <= 2000),
  last_response     text check (length(last_response) <= 2000),
  last_attempt_at   timestamptz,
  delivered_at      timestamptz,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  unique (message_id, endpoint_id)
);
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, created_at desc, id desc);
create trigger webhook_deliveries_updated_at before update on webhook_deliveries for each row execute function set_updated_at();
alter table webhook_deliveries enable row level security;
