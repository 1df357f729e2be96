-- Checkouts Tally signs (issue 18; docs/payments.md, "Checkouts"). POST /v1/checkout creates the
-- provider's checkout with metadata Tally signs (user, package or plan, price, expiry, nonce = this
-- row's id). The webhook that follows verifies the signature, finds this row (a checkout signed by
-- another deployment is not here), checks the amount paid against the signed price, and binds the
-- row to the one payment that used it: a second payment carrying the same metadata (a replay) is
-- refused. What the checkout buys is frozen here when it is created.
create table checkouts (
  id                    text primary key,
  user_id               text not null references users (id) on delete cascade,
  provider              text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  -- What it buys, frozen (no foreign keys: a package or plan deleted later changes nothing here).
  package_id            text,
  plan_id               text,
  billing_interval      text check (billing_interval in ('monthly', 'yearly')),
  amount                bigint not null check (amount > 0),
  currency              text not null check (currency ~ '^[a-z]{3}$'),
  credits               bigint not null default 0 check (credits >= 0),
  credit_class          text check (credit_class ~ '^[A-Za-z0-9_.-]{1,32}$'),
  credits_expire_days   integer check (credits_expire_days is null or credits_expire_days > 0),
  -- creating: the row exists, the provider has not answered yet; open: the link works;
  -- failed: the provider refused or could not be reached; completed: its payment succeeded.
  status                text not null default 'creating' check (status in ('creating', 'open', 'failed', 'completed')),
  provider_checkout_id  text check (length(provider_checkout_id) <= 255),
  url                   text check (length(url) <= 4096),
  error                 text check (length(error) <= 500),
  -- The one payment this checkout's metadata may buy with (first seen wins; never changes).
  payment_id            text references payments (id) on delete set null,
  expires_at            timestamptz not null,
  completed_at          timestamptz,
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now(),
  unique (provider, provider_checkout_id)
);
create index checkouts_user_idx on checkouts (user_id, created_at desc, id desc);
create unique index checkouts_payment_idx on checkouts (payment_id) where payment_id is not null;
create trigger checkouts_updated_at before update on checkouts for each row execute function set_updated_at();
alter table checkouts enable row level security;
grant select (id, user_id, provider, package_id, plan_id, billing_interval, amount, currency, credits, status,
  provider_checkout_id, url, payment_id, expires_at, completed_at, created_at, updated_at) on checkouts to authenticated;
create policy checkouts_read_own on checkouts for select to authenticated using (user_id = auth.uid());

-- matched_by 'checkout': the user came from a checkout Tally created and signed.
alter table payments drop constraint payments_matched_by_check;
alter table payments add constraint payments_matched_by_check
  check (matched_by in ('metadata', 'customer', 'email', 'alias', 'admin', 'reference', 'checkout'));
