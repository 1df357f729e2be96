-- Outgoing webhooks' remaining events (issue 18; docs/webhooks-out.md).
--
-- credit_accounts.low_threshold: the balance below which the account is low. A ledger movement
-- that takes the balance from at or above it to below it tells `credits.low` (in its batch's
-- transaction); movements that stay below tell nothing, and a top-up back over it re-arms it.
-- Null: the deployment's TALLY_CREDITS_LOW_THRESHOLD (0 = none). Per account, so per user and
-- per workspace pool; setting it moves the account's version on (a chained batch reloads it).
alter table credit_accounts add column low_threshold bigint check (low_threshold >= 0);

-- subscriptions.trial_ending_told_at: when `subscription.trial_ending` was told (a few days before
-- trial_end), so the scheduler tells it once per trial; a new trial_end clears it.
alter table subscriptions add column trial_ending_told_at timestamptz;
