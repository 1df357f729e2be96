-- Billing money holes (issue 13). See docs/billing.md ("Rules that keep money in").

-- ---------------------------------------------------------------------------------------------
-- Plans: a price of null means the plan does not offer that interval; 0 means free on it. Before,
-- an unset price was 0, so a plan priced only monthly was free yearly.
-- ---------------------------------------------------------------------------------------------
alter table plans alter column price_monthly drop not null;
alter table plans alter column price_monthly drop default;
alter table plans alter column price_yearly drop not null;
alter table plans alter column price_yearly drop default;
-- A plan paid on one interval and 0 on the other never meant "free" there: it was the default.
update plans set price_yearly = null where price_yearly = 0 and price_monthly > 0;
update plans set price_monthly = null where price_monthly = 0 and price_yearly > 0;
alter table plans add constraint plans_offers_an_interval check (price_monthly is not null or price_yearly is not null);

-- A subscription a user made for themselves (a free plan): renewed only while the plan stays free.
alter table subscriptions add column self_service boolean not null default false;

-- ---------------------------------------------------------------------------------------------
-- Allowance windows: granted once per owner, not once per subscription. A window that overlaps
-- one already granted to the same user for the same plan, class and window kind grants only the
-- part that is not covered yet (docs/billing.md). user_id lets that be found.
-- ---------------------------------------------------------------------------------------------
alter table allowance_cycles add column user_id text references users (id) on delete cascade;
update allowance_cycles c set user_id = s.user_id from subscriptions s where s.id = c.subscription_id;
alter table allowance_cycles alter column user_id set not null;
create index allowance_cycles_owner_idx on allowance_cycles (user_id, plan_id, class, "window", cycle_end);

-- ---------------------------------------------------------------------------------------------
-- Daily free quota: each (user, metric) has one chain of windows that never overlap. A window is
-- the local day of the user's zone when it opens, but never starts before the last one ended, so
-- changing one's time zone cannot open a second "today".
-- ---------------------------------------------------------------------------------------------
alter table daily_quota_usage add column window_start timestamptz;
alter table daily_quota_usage add column window_end timestamptz;
-- Rows from before: the local day of the user's zone as it is now (UTC when unset).
update daily_quota_usage q set
  window_start = (q.date_key::timestamp at time zone coalesce(u.time_zone, 'UTC')),
  window_end = ((q.date_key + 1)::timestamp at time zone coalesce(u.time_zone, 'UTC'))
from users u where u.id = q.user_id;
alter table daily_quota_usage alter column window_start set not null;
alter table daily_quota_usage alter column window_end set not null;
alter table daily_quota_usage add constraint daily_quota_usage_window_check check (window_end > window_start);
alter table daily_quota_usage drop constraint daily_quota_usage_pkey;
alter table daily_quota_usage add primary key (user_id, metric, window_start);

-- ---------------------------------------------------------------------------------------------
-- Budget guards: the zone is fixed when the service sets the guard (null: the deployment's
-- TALLY_TIME_ZONE), and the window's end is stored, so the user it limits cannot move either.
-- ---------------------------------------------------------------------------------------------
alter table budget_guards add column time_zone text check (length(time_zone) between 1 and 64);
-- null for guards from before: their window's end is worked out from window_start once.
alter table budget_guards add column window_end timestamptz;
alter table budget_guards add constraint budget_guards_window_check check (window_end is null or window_end > window_start);
update budget_guards g set time_zone = u.time_zone from users u where u.id = g.user_id;
