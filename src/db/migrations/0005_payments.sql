-- Payments (issue 5): provider customers, payments, invoices, the webhook log, credit packages,
-- e-mail aliases for matching, and the ledger changes a clawback needs. See docs/payments.md.
-- Seeds: 000 payments; 001 payments, user_email_aliases, unmatched_payment_emails, system_config;
-- 002 customers, invoices, webhook_logs; 003 subscriptions.lemon_squeezy_id (→ billing's port).

-- ---------------------------------------------------------------------------------------------
-- Ledger: clawbacks. A refund or dispute takes back what its payment granted; when the credits
-- are already spent the balance goes negative (a `debt` grant with negative remaining), and a
-- negative available blocks spending until new grants pay the debt off. docs/ledger.md.
-- ---------------------------------------------------------------------------------------------
-- NOTE for merges: 0003/0004 may widen this list too; the last migration must name the union.
alter table credit_ledger drop constraint credit_ledger_type_check;
alter table credit_ledger add constraint credit_ledger_type_check
  check (type in ('grant', 'debit', 'refund', 'adjustment', 'capture', 'expiry', 'rollover', 'clawback'));

-- 0002 had `held <= balance`. A clawback may leave the balance below what open holds reserve
-- (the credits backing the holds stay, the debt is counted beside them), so the row keeps only
-- `held >= 0`; reconcile checks `held <= Σ positive grant remaining` instead.
do $$
declare c text;
begin
  select conname into c from pg_constraint
   where conrelid = 'credit_accounts'::regclass and contype = 'c' and pg_get_constraintdef(oid) like '%held <= balance%';
  execute format('alter table credit_accounts drop constraint %I', c);
end $$;
alter table credit_accounts add constraint credit_accounts_held_check check (held >= 0);

-- Only a `debt` grant may be negative: -amount <= remaining <= 0 (amount = the most ever owed).
alter table credit_grants drop constraint credit_grants_remaining_check;
alter table credit_grants add constraint credit_grants_remaining_check
  check (case when source = 'debt' then remaining <= 0 and remaining >= -amount else remaining >= 0 end);

-- ---------------------------------------------------------------------------------------------
-- credit_packages: what a provider price / variant / product buys (000 package_id + points).
-- ---------------------------------------------------------------------------------------------
create table credit_packages (
  id                text primary key,
  name              text not null check (length(name) between 1 and 255),
  provider          text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  provider_price_id text not null check (length(provider_price_id) between 1 and 255),
  credits           bigint not null check (credits > 0),
  class             text not null default 'default' check (class ~ '^[A-Za-z0-9_.-]{1,32}$'),
  -- Purchased credits expire this many days after the payment (null: never).
  expires_in_days   integer check (expires_in_days is null or expires_in_days > 0),
  price_amount      bigint check (price_amount is null or price_amount >= 0),
  currency          text check (currency is null or currency ~ '^[a-z]{3}$'),
  is_active         boolean not null default true,
  metadata          jsonb not null default '{}'::jsonb,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  unique (provider, provider_price_id)
);
create index credit_packages_created_idx on credit_packages (created_at desc, id desc);
create trigger credit_packages_updated_at before update on credit_packages for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- user_email_aliases (001): other addresses a user pays with.
-- ---------------------------------------------------------------------------------------------
create table user_email_aliases (
  id         text primary key,
  user_id    text not null references users (id) on delete cascade,
  email      text not null check (length(email) between 3 and 320),
  note       text check (length(note) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index user_email_aliases_email_key on user_email_aliases (lower(email));
create index user_email_aliases_user_idx on user_email_aliases (user_id, created_at desc);
create trigger user_email_aliases_updated_at before update on user_email_aliases for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- payment_customers (002 customers, generalised to every provider).
-- ---------------------------------------------------------------------------------------------
create table payment_customers (
  id                   text primary key,
  user_id              text not null references users (id) on delete cascade,
  provider             text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  provider_customer_id text not null check (length(provider_customer_id) between 1 and 255),
  email                text check (length(email) <= 320),
  billing_address      jsonb,
  metadata             jsonb not null default '{}'::jsonb,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now(),
  unique (provider, provider_customer_id)
);
create index payment_customers_user_idx on payment_customers (user_id, created_at desc, id desc);
create trigger payment_customers_updated_at before update on payment_customers for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- payments (000/001 payments). One row per provider payment id, forever. user_id is null while
-- the payment waits in the unmatched queue (001 unmatched_payment_emails).
-- ---------------------------------------------------------------------------------------------
create table payments (
  id                   text primary key,
  user_id              text references users (id) on delete set null,
  provider             text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  provider_payment_id  text not null check (length(provider_payment_id) between 1 and 255),
  provider_customer_id text check (length(provider_customer_id) <= 255),
  customer_id          text references payment_customers (id) on delete set null,
  status               text not null default 'created' check (status in
                         ('created', 'requires_action', 'processing', 'succeeded', 'failed', 'refunded', 'disputed')),
  amount               bigint not null check (amount >= 0),
  amount_refunded      bigint not null default 0 check (amount_refunded >= 0),
  currency             text not null check (currency ~ '^[a-z]{3}$'),
  email                text check (length(email) <= 320),
  -- What the payment buys: credits (from metadata, a package or the credit price) or a plan.
  package_id           text references credit_packages (id) on delete set null,
  plan_id              text check (length(plan_id) <= 128),
  provider_price_id    text check (length(provider_price_id) <= 255),
  credits              bigint not null default 0 check (credits >= 0),
  credits_clawed_back  bigint not null default 0 check (credits_clawed_back >= 0 and credits_clawed_back <= credits),
  grant_transaction_id text,
  grant_id             text,
  match_status         text not null default 'matched' check (match_status in ('matched', 'unmatched', 'resolved')),
  matched_by           text check (matched_by in ('metadata', 'customer', 'email', 'alias', 'admin')),
  receipt_url          text check (length(receipt_url) <= 2048),
  description          text check (length(description) <= 500),
  raw_payload          jsonb,
  metadata             jsonb not null default '{}'::jsonb,
  processed_at         timestamptz,
  refunded_at          timestamptz,
  disputed_at          timestamptz,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now(),
  unique (provider, provider_payment_id),
  check ((user_id is null) = (match_status = 'unmatched')),
  check (amount_refunded <= amount)
);
create index payments_user_idx on payments (user_id, created_at desc, id desc);
create index payments_created_idx on payments (created_at desc, id desc);
create index payments_unmatched_idx on payments (created_at desc, id desc) where match_status = 'unmatched';
create trigger payments_updated_at before update on payments for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- invoices (002 invoices, every provider's subscription invoices).
-- ---------------------------------------------------------------------------------------------
create table invoices (
  id                       text primary key,
  user_id                  text references users (id) on delete set null,
  customer_id              text references payment_customers (id) on delete set null,
  provider                 text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  provider_invoice_id      text not null check (length(provider_invoice_id) between 1 and 255),
  provider_subscription_id text check (length(provider_subscription_id) <= 255),
  payment_id               text references payments (id) on delete set null,
  status                   text not null check (status in ('draft', 'open', 'paid', 'void', 'uncollectible')),
  amount_due               bigint not null default 0 check (amount_due >= 0),
  amount_paid              bigint not null default 0 check (amount_paid >= 0),
  currency                 text not null check (currency ~ '^[a-z]{3}$'),
  invoice_pdf_url          text check (length(invoice_pdf_url) <= 2048),
  hosted_invoice_url       text check (length(hosted_invoice_url) <= 2048),
  period_start             timestamptz,
  period_end               timestamptz,
  paid_at                  timestamptz,
  raw_payload              jsonb,
  created_at               timestamptz not null default now(),
  updated_at               timestamptz not null default now(),
  unique (provider, provider_invoice_id)
);
create index invoices_user_idx on invoices (user_id, created_at desc, id desc);
create trigger invoices_updated_at before update on invoices for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- webhook_events (002 webhook_logs): every verified delivery, keyed by the provider's event id
-- forever (a replay finds its row). Deliveries that fail verification are kept as `rejected`
-- rows without their (untrusted) payload.
-- ---------------------------------------------------------------------------------------------
create table webhook_events (
  id           text primary key,
  provider     text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  event_id     text check (length(event_id) <= 255),
  event_type   text check (length(event_type) <= 255),
  status       text not null default 'received'
                 check (status in ('received', 'processing', 'processed', 'failed', 'ignored', 'rejected')),
  payload      jsonb,
  signature    text check (length(signature) <= 2048),
  attempts     integer not null default 0 check (attempts >= 0),
  outcome      text check (length(outcome) <= 1000),
  error        text check (length(error) <= 4000),
  response     jsonb,
  processed_at timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  check ((event_id is null) = (status = 'rejected'))
);
create unique index webhook_events_event_key on webhook_events (provider, event_id) where event_id is not null;
create index webhook_events_created_idx on webhook_events (created_at desc, id desc);
create index webhook_events_status_idx on webhook_events (status, created_at desc);
create trigger webhook_events_updated_at before update on webhook_events for each row execute function set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Row-level security: a paying user reads their own customers, payments and invoices; nobody but
-- the owning role writes any of it. Packages, aliases and the webhook log are service-only.
-- ---------------------------------------------------------------------------------------------
alter table credit_packages enable row level security;
alter table user_email_aliases enable row level security;
alter table payment_customers enable row level security;
alter table payments enable row level security;
alter table invoices enable row level security;
alter table webhook_events enable row level security;

grant select (id, user_id, provider, provider_customer_id, email, created_at, updated_at) on payment_customers to authenticated;
create policy payment_customers_read_own on payment_customers for select to authenticated using (user_id = auth.uid());

-- Not the raw provider payload: it may carry other parties' data (and is the service's business).
grant select (id, user_id, provider, provider_payment_id, provider_customer_id, customer_id, status, amount,
  amount_refunded, currency, email, package_id, plan_id, provider_price_id, credits, credits_clawed_back,
  grant_transaction_id, match_status, receipt_url, description, metadata, processed_at, refunded_at,
  disputed_at, created_at, updated_at) on payments to authenticated;
create policy payments_read_own on payments for select to authenticated using (user_id = auth.uid());

grant select (id, user_id, customer_id, provider, provider_invoice_id, provider_subscription_id, payment_id, status,
  amount_due, amount_paid, currency, invoice_pdf_url, hosted_invoice_url, period_start, period_end, paid_at,
  created_at, updated_at) on invoices to authenticated;
create policy invoices_read_own on invoices for select to authenticated using (user_id = auth.uid());

grant select (id, user_id, email, note, created_at, updated_at) on user_email_aliases to authenticated;
create policy user_email_aliases_read_own on user_email_aliases for select to authenticated using (user_id = auth.uid());
-- credit_packages, webhook_events: no grant, no policy — the service's own.

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
