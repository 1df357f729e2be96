-- Seed 001 (`video-credits`, ../shared/seeds/001_*.decoded.txt) as its own SQL: the tables and the
-- columns the seed names (users with credits_balance/credits_total/credits_spent and the subscription
-- fields, credit_transactions, video_jobs, payments, user_subscriptions with plan_type, plan_status,
-- subscription_id). The seed gives no DDL, so types and the few columns it does not name (currency,
-- timestamps) are the ordinary Supabase ones. Its two optional tables, `api_keys` ("API key
-- management") and `usage_stats` ("usage statistics, daily"), are named without a single column:
-- the columns here are the ones docs/import.md says the import reads.
-- Run with search_path set to the fixture's schema. The foreign keys are the seed's ("ON DELETE
-- CASCADE" everywhere); tests drop them to plant orphans, as a dump restored without them has.
create table users (
  id                  uuid primary key,
  email               text unique,
  full_name           text,
  subscription_plan   text not null default 'free',
  subscription_status text not null default 'active',
  credits_balance     integer not null default 3,
  credits_total       integer not null default 3,
  credits_spent       integer not null default 0,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now()
);
create table credit_transactions (
  id               uuid primary key default gen_random_uuid(),
  user_id          uuid references users (id) on delete cascade,
  amount           integer not null,
  transaction_type text not null check (transaction_type in ('credit', 'debit', 'refund')),
  reason           text,
  metadata         jsonb not null default '{}'::jsonb,
  created_at       timestamptz not null default now()
);
create index on credit_transactions (user_id);
create table video_jobs (
  id           uuid primary key default gen_random_uuid(),
  user_id      uuid references users (id) on delete cascade,
  job_id       text unique,
  status       text not null default 'pending' check (status in ('pending', 'processing', 'completed', 'failed')),
  prompt       text,
  image_url    text,
  result_url   text,
  cost_credits integer not null default 0,
  model        text,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);
create table payments (
  id         uuid primary key default gen_random_uuid(),
  user_id    uuid references users (id) on delete cascade,
  payment_id text not null,
  amount     numeric(10, 2) not null,
  currency   text not null default 'usd',
  status     text not null,
  created_at timestamptz not null default now()
);
create table user_subscriptions (
  id              uuid primary key default gen_random_uuid(),
  user_id         uuid references users (id) on delete cascade,
  plan_type       text not null,
  plan_status     text not null,
  subscription_id text,
  created_at      timestamptz not null default now()
);
create table api_keys (
  id           uuid primary key default gen_random_uuid(),
  user_id      uuid references users (id) on delete cascade,
  name         text,
  key_prefix   text,
  key_hash     text not null,
  is_active    boolean not null default true,
  last_used_at timestamptz,
  expires_at   timestamptz,
  created_at   timestamptz not null default now()
);
create table usage_stats (
  id               uuid primary key default gen_random_uuid(),
  user_id          uuid references users (id) on delete cascade,
  date             date not null,
  videos_generated integer not null default 0,
  credits_used     integer not null default 0,
  created_at       timestamptz not null default now(),
  unique (user_id, date)
);
