-- Billing: plans with allowances, subscriptions and their allowance cycles, cost models, usage
-- events with the daily free quota, usage counters, period summaries, overage charges and budget
-- guards. Allowances and rollover buckets are credit grants (source `allowance` / `rollover`), so
-- every credit that comes or goes is still a ledger entry. See docs/billing.md.

-- A user's own time zone for the daily free quota (null → the deployment's TALLY_TIME_ZONE).
alter table users add column time_zone text check (length(time_zone) between 1 and 64);
grant update (time_zone) on users to authenticated;
grant select (time_zone) on users to authenticated;

-- Rollover: when a grant with `rollover_until` expires, its remainder moves into a new `rollover`
-- grant that expires at `rollover_until` (one cycle, or the subscription year) — the engine does it
-- in the same step as the expiry, so it can never be lost to a race with the scheduler.
alter table credit_grants add column rollover_until timestamptz;
alter table credit_ledger drop constraint credit_ledger_type_check;
alter table credit_ledger add constraint credit_ledger_type_check
  check (type in ('grant', 'debit', 'refund', 'adjustment', 'capture', 'expiry', 'rollover'));

create table plans (
  id                   text primary key,
  slug                 text not null unique check (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
  name                 text not null unique check (length(name) between 1 and 100),
  description          text check (length(description) <= 2000),
  -- shared_pool: a metric may draw on every allowance class; hybrid: only on its own class.
  pool_mode            text not null default 'hybrid' check (pool_mode in ('shared_pool', 'hybrid')),
  pay_as_you_go        boolean not null default false,
  -- Overage price per credit, in minor units of `currency` (fractions allowed, like Stripe's unit_amount_decimal).
  overage_unit_amount  numeric(18, 6) not null default 0 check (overage_unit_amount >= 0),
  usage_bonus_rate     numeric(6, 4) not null default 0 check (usage_bonus_rate >= 0 and usage_bonus_rate <= 10),
  trial_days           integer not null default 1 check (trial_days between 0 and 365),
  price_monthly        bigint not null default 0 check (price_monthly >= 0),
  price_yearly         bigint not null default 0 check (price_yearly >= 0),
  currency             text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
  features             jsonb not null default '[]'::jsonb,
  limits               jsonb not null default '{}'::jsonb,
  metadata             jsonb not null default '{}'::jsonb,
  is_active            boolean not null default true,
  sort_order           integer not null default 0,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now()
);
create trigger plans_updated_at before update on plans for each row execute function set_updated_at();

-- What a plan grants each window (000 plans.bc_monthly/rc_monthly and allowances.type/window/rollover_policy).
create table plan_allowances (
  plan_id          text not null references plans (id) on delete cascade,
  class            text not null check (class ~ '^[A-Za-z0-9_.-]{1,32}$'),
  amount           bigint not null check (amount > 0),
  "window"         text not null default 'monthly' check ("window" in ('daily', 'monthly', 'yearly')),
  rollover_policy  text not null default 'none' check (rollover_policy in ('none', '1_cycle', 'annual')),
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  primary key (plan_id, class, "window")
);
create trigger plan_allowances_updated_at before update on plan_allowances for each row execute function set_updated_at();

-- Provider prices that buy a plan (002 stripe_price_id_monthly/yearly; Lemon Squeezy variants, …).
create table plan_prices (
  provider           text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  provider_price_id  text not null check (length(provider_price_id) between 1 and 255),
  plan_id            text not null references plans (id) on delete cascade,
  billing_interval   text not null check (billing_interval in ('monthly', 'yearly')),
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  primary key (provider, provider_price_id)
);
create index plan_prices_plan_idx on plan_prices (plan_id);
create trigger plan_prices_updated_at before update on plan_prices for each row execute function set_updated_at();

create table subscriptions (
  id                        text primary key,
  user_id                   text not null references users (id) on delete cascade,
  plan_id                   text not null references plans (id),
  status                    text not null check (status in ('trialing', 'active', 'past_due', 'canceled')),
  billing_interval          text not null default 'monthly' check (billing_interval in ('monthly', 'yearly')),
  is_primary                boolean not null default true,
  -- null = inherit the plan's pay_as_you_go
  pay_as_you_go             boolean,
  current_period_start      timestamptz not null,
  current_period_end        timestamptz not null,
  -- The anniversary the `annual` rollover runs to (start + whole years).
  anchor_at                 timestamptz not null,
  trial_start               timestamptz,
  trial_end                 timestamptz,
  cancel_at_period_end      boolean not null default false,
  -- When the next allowance window opens (the scheduler's index; null = nothing to open).
  cycles_due_at             timestamptz,
  canceled_at               timestamptz,
  ended_at                  timestamptz,
  provider                  text check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  provider_subscription_id  text,
  provider_customer_id      text,
  metadata                  jsonb not null default '{}'::jsonb,
  created_at                timestamptz not null default now(),
  updated_at                timestamptz not null default now(),
  check (current_period_end > current_period_start),
  check ((provider is null) = (provider_subscription_id is null)),
  check ((status = 'canceled') = (ended_at is not null))
);
-- One live primary subscription per user (a canceled one may stay next to its successor).
create unique index subscriptions_one_primary on subscriptions (user_id) where is_primary and status <> 'canceled';
create unique index subscriptions_provider_idx on subscriptions (provider, provider_subscription_id) where provider is not null;
create index subscriptions_user_idx on subscriptions (user_id, created_at desc, id desc);
create index subscriptions_due_idx on subscriptions (current_period_end) where status <> 'canceled';
create index subscriptions_cycles_due_idx on subscriptions (cycles_due_at) where status <> 'canceled';
create trigger subscriptions_updated_at before update on subscriptions for each row execute function set_updated_at();

-- One row per allowance window opened: the unique key makes granting a window's allowance happen
-- exactly once, whoever (scheduler, renewal, provider webhook) gets there first.
create table allowance_cycles (
  subscription_id  text not null references subscriptions (id) on delete cascade,
  -- Per plan: changing plans mid-cycle and back again never grants the same cycle twice.
  plan_id          text not null references plans (id),
  class            text not null,
  "window"         text not null,
  cycle_start      timestamptz not null,
  cycle_end        timestamptz not null,
  amount           bigint not null,
  grant_id         text references credit_grants (id),
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  primary key (subscription_id, plan_id, class, "window", cycle_start)
);
create trigger allowance_cycles_updated_at before update on allowance_cycles for each row execute function set_updated_at();

-- How a metric is priced (000 cost_models): credits = ceil(formula(quantity, complexity, base_rate)).
create table cost_models (
  metric            text primary key check (metric ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  unit              text not null default 'unit' check (length(unit) between 1 and 32),
  formula           text not null default 'quantity * base_rate' check (length(formula) between 1 and 500),
  base_rate         numeric(18, 6) not null default 1 check (base_rate >= 0),
  -- The credit class the metric draws its allowance from (hybrid plans).
  class             text not null default 'Usage' check (class ~ '^[A-Za-z0-9_.-]{1,32}$'),
  -- Free units per user per day (000 allowance_daily_autofix), 0 = none.
  daily_free_quota  integer not null default 0 check (daily_free_quota >= 0),
  currency          text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
  metadata          jsonb not null default '{}'::jsonb,
  is_active         boolean not null default true,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);
create trigger cost_models_updated_at before update on cost_models for each row execute function set_updated_at();

-- Daily free quota used, by the user's local date (000 allowance_daily_autofix).
create table daily_quota_usage (
  user_id     text not null references users (id) on delete cascade,
  metric      text not null,
  date_key    date not null,
  consumed    numeric(20, 6) not null default 0 check (consumed >= 0),
  quota       bigint not null check (quota >= 0),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (user_id, metric, date_key),
  check (consumed <= quota)
);
create trigger daily_quota_usage_updated_at before update on daily_quota_usage for each row
  when (old.updated_at is not distinct from new.updated_at) execute function set_updated_at();

-- Usage events (000 consumption_events, 002 usage_records): idempotent by (user, action_hash) forever.
create table usage_events (
  id                text primary key,
  user_id           text not null references users (id) on delete cascade,
  metric            text not null,
  quantity          numeric(20, 6) not null check (quantity > 0),
  complexity_score  numeric(12, 4),
  action_hash       text not null check (length(action_hash) between 1 and 255),
  request_hash      text not null,
  subscription_id   text references subscriptions (id) on delete set null,
  free_units        numeric(20, 6) not null default 0,
  cost              bigint not null check (cost >= 0),
  charged           bigint not null check (charged >= 0),
  overage           bigint not null default 0 check (overage >= 0),
  transaction_id    text references credit_ledger (id),
  result            jsonb not null,
  metadata          jsonb not null default '{}'::jsonb,
  occurred_at       timestamptz not null,
  created_at        timestamptz not null default now(),
  unique (user_id, action_hash)
);
create index usage_events_user_idx on usage_events (user_id, created_at desc, id desc);

-- Running totals per window (003 usage_counters, 000 usage_meter_readings): `day` by the user's
-- local date, `month` by calendar month, `period` by subscription period.
create table usage_counters (
  user_id       text not null references users (id) on delete cascade,
  metric        text not null,
  "window"      text not null check ("window" in ('day', 'month', 'period')),
  window_start  timestamptz not null,
  window_end    timestamptz not null,
  quantity      numeric(24, 6) not null default 0,
  credits       bigint not null default 0,
  overage       bigint not null default 0,
  events        bigint not null default 0,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (user_id, metric, "window", window_start)
);
-- The usage batch sets updated_at itself; the trigger covers every other writer.
create trigger usage_counters_updated_at before update on usage_counters for each row
  when (old.updated_at is not distinct from new.updated_at) execute function set_updated_at();

-- A closed period per metric (000 usage_summaries), written once when the period closes.
create table usage_summaries (
  id               text primary key,
  subscription_id  text not null references subscriptions (id) on delete cascade,
  user_id          text not null references users (id) on delete cascade,
  metric           text not null,
  period_start     timestamptz not null,
  period_end       timestamptz not null,
  quantity         numeric(24, 6) not null,
  credits          bigint not null,
  overage          bigint not null,
  overage_amount   bigint not null,
  currency         text not null,
  created_at       timestamptz not null default now(),
  unique (subscription_id, metric, period_start)
);

-- Pay-as-you-go overage per subscription period and metric (000 overage_charges): accrues while the
-- period runs (pending), is invoiced when it closes, then paid or waived.
create table overage_charges (
  id                text primary key,
  user_id           text not null references users (id) on delete cascade,
  subscription_id   text not null references subscriptions (id) on delete cascade,
  metric            text not null,
  period_start      timestamptz not null,
  period_end        timestamptz not null,
  credits           bigint not null default 0 check (credits >= 0),
  -- Minor units: ceil(credits × the plan's overage_unit_amount), recomputed on each accrual.
  amount            bigint not null default 0 check (amount >= 0),
  unit_amount       numeric(18, 6) not null,
  currency          text not null,
  status            text not null default 'pending' check (status in ('pending', 'invoiced', 'paid', 'waived')),
  usage_summary_id  text references usage_summaries (id) on delete set null,
  metadata          jsonb not null default '{}'::jsonb,
  invoiced_at       timestamptz,
  settled_at        timestamptz,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  unique (subscription_id, metric, period_start)
);
create index overage_charges_user_idx on overage_charges (user_id, created_at desc, id desc);
create trigger overage_charges_updated_at before update on overage_charges for each row execute function set_updated_at();

-- A monthly cap on usage spend (overage money), checked before every charge (000 budget_guards).
create table budget_guards (
  id                    text primary key,
  user_id               text not null unique references users (id) on delete cascade,
  monthly_cap           bigint not null check (monthly_cap >= 0),
  currency              text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
  behavior              text not null default 'throttle' check (behavior in ('suspend', 'throttle')),
  notify                boolean not null default true,
  -- Spend so far in the calendar month that starts at window_start, in micro minor units (exact).
  window_start          timestamptz not null,
  current_window_spend  bigint not null default 0,
  alerted_80_at         timestamptz,
  alerted_100_at        timestamptz,
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);
create trigger budget_guards_updated_at before update on budget_guards for each row execute function set_updated_at();

-- Row-level security: plans and cost models are public catalogue (read by any signed-in user);
-- the rest is read-own; nothing is writable by end users (the service layer writes).
alter table plans enable row level security;
alter table plan_allowances enable row level security;
alter table plan_prices enable row level security;
alter table subscriptions enable row level security;
alter table allowance_cycles enable row level security;
alter table cost_models enable row level security;
alter table daily_quota_usage enable row level security;
alter table usage_events enable row level security;
alter table usage_counters enable row level security;
alter table usage_summaries enable row level security;
alter table overage_charges enable row level security;
alter table budget_guards enable row level security;

grant select on plans, plan_allowances, plan_prices, cost_models, subscriptions, daily_quota_usage, usage_events,
  usage_counters, usage_summaries, overage_charges, budget_guards to authenticated;
create policy plans_read_active on plans for select to authenticated using (is_active);
create policy plan_allowances_read on plan_allowances for select to authenticated
  using (exists (select 1 from plans p where p.id = plan_id and p.is_active));
create policy plan_prices_read on plan_prices for select to authenticated
  using (exists (select 1 from plans p where p.id = plan_id and p.is_active));
create policy cost_models_read on cost_models for select to authenticated using (is_active);
create policy subscriptions_read_own on subscriptions for select to authenticated using (user_id = auth.uid());
create policy daily_quota_usage_read_own on daily_quota_usage for select to authenticated using (user_id = auth.uid());
create policy usage_events_read_own on usage_events for select to authenticated using (user_id = auth.uid());
create policy usage_counters_read_own on usage_counters for select to authenticated using (user_id = auth.uid());
create policy usage_summaries_read_own on usage_summaries for select to authenticated using (user_id = auth.uid());
create policy overage_charges_read_own on overage_charges for select to authenticated using (user_id = auth.uid());
create policy budget_guards_read_own on budget_guards for select to authenticated using (user_id = auth.uid());
-- allowance_cycles: no grant — internal bookkeeping.
