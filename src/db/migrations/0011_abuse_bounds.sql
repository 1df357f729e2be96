-- Issue 13, item 9: what strangers can make Tally store is bounded.
--
-- Webhook deliveries that fail verification were one `rejected` row each, without bound: anyone can
-- post to /v1/webhooks/:provider. They are now one row per (provider, reason): `attempts` counts the
-- deliveries, `created_at` is the first one, `updated_at` the latest, `signature` the latest one's
-- header. Reasons come from a fixed set in code (docs/payments.md), so the rows are bounded too.

-- Every rejected row has a reason (the code always wrote one; the key below needs it).
update webhook_events set error = 'unknown' where status = 'rejected' and error is null;
alter table webhook_events add constraint webhook_events_rejected_reason check (status <> 'rejected' or error is not null);

-- Existing rejected rows collapse into that form: the newest of each (provider, reason) is kept,
-- carrying the count and the first one's time.
with ranked as (
  select id,
         count(*) over w as n,
         min(created_at) over w as first_at,
         row_number() over (partition by provider, error order by created_at desc, id desc) as rn
    from webhook_events
   where status = 'rejected'
  window w as (partition by provider, error)
), gone as (
  delete from webhook_events e using ranked r where e.id = r.id and r.rn > 1 returning e.id
)
update webhook_events e set attempts = r.n, created_at = r.first_at from ranked r where e.id = r.id and r.rn = 1;

create unique index webhook_events_rejected_key on webhook_events (provider, error) where status = 'rejected';
