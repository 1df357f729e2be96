-- A ledger entry's place in its account's history, as a number: seq = 1, 2, 3 … per account, given
-- by the ledger engine while it holds the account's row lock (credit_accounts.last_seq is the last
-- one given). balance_after is the running sum in seq order — an order no clock can disturb
-- (created_at comes from the application's clock, and two processes' clocks may disagree).

alter table credit_accounts add column last_seq bigint not null default 0 check (last_seq >= 0);
alter table credit_ledger add column seq bigint;

-- Number what is already there in the order it was listed by (created_at, id). The ledger is
-- append-only, so its trigger is set aside for this one numbering.
alter table credit_ledger disable trigger credit_ledger_append_only;
update credit_ledger l set seq = n.seq
from (select id, row_number() over (partition by account_id order by created_at, id) as seq from credit_ledger) n
where n.id = l.id;
alter table credit_ledger enable trigger credit_ledger_append_only;
update credit_accounts a set last_seq = c.n
from (select account_id, count(*) as n from credit_ledger group by account_id) c
where c.account_id = a.id;

alter table credit_ledger alter column seq set not null;
alter table credit_ledger add constraint credit_ledger_seq_positive check (seq > 0);
