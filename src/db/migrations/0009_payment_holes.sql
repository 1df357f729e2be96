-- Payment holes (issue 13, items 5, 6 and 8). See docs/payments.md.
--
-- 1. What a payment bought is frozen on its row when it is priced: the credit class and the
--    days until its credits expire (a package's), beside the credits. A resolve grants exactly
--    that, even if the package was changed or deleted meanwhile.
-- 2. Why a payment waits in the unmatched queue (no user, or a price that does not match).
-- 3. matched_by 'reference': the user came from a checkout reference Tally signed.
-- 4. payment_refs: every other id a provider uses for one payment (Stripe: the invoice, its
--    payment intent, its charge), so refunds and disputes find the row whatever id they name.
--    An alias may be learned before its payment row exists, so it names the provider payment id
--    the row is (or will be) keyed by, not the row.

alter table payments add column credit_class text check (credit_class ~ '^[A-Za-z0-9_.-]{1,32}$');
alter table payments add column credits_expire_days integer check (credits_expire_days is null or credits_expire_days > 0);
alter table payments add column unmatched_reason text check (length(unmatched_reason) <= 500);

alter table payments drop constraint payments_matched_by_check;
alter table payments add constraint payments_matched_by_check
  check (matched_by in ('metadata', 'customer', 'email', 'alias', 'admin', 'reference'));

create table payment_refs (
  provider            text not null check (provider in ('stripe', 'paypal', 'creem', 'lemonsqueezy')),
  ref                 text not null check (length(ref) between 1 and 255),
  provider_payment_id text not null check (length(provider_payment_id) between 1 and 255),
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now(),
  primary key (provider, ref)
);
create index payment_refs_payment_idx on payment_refs (provider, provider_payment_id);
create trigger payment_refs_updated_at before update on payment_refs for each row execute function set_updated_at();

-- payment_refs is the service's own (no grant, no policy); users read the new payment columns.
alter table payment_refs enable row level security;
grant select (credit_class, credits_expire_days, unmatched_reason) on payments to authenticated;
