-- A fresh random number with every ledger write of an account (credit_accounts.version), whatever
-- it changed: balance, holds, grants. Random rather than counted, so a write that rolled back can
-- never have named a version that another write then makes real. A process that remembers the state it wrote for an account can
-- tell, once it holds the row lock again, whether anyone wrote the account since (another process,
-- or a transaction of its own that rolled back): same version, same state. last_seq cannot tell —
-- a hold or a release writes no ledger entry — and neither can the balances (a release and a new
-- hold of the same amount leave them as they were). See docs/ledger.md, "Chained batches".
alter table credit_accounts add column version bigint not null default 0 check (version >= 0);
