-- Billed code runs are paid before they run (attacker review 4, docs/ide.md "Billing runs"): the
-- move to running takes a ledger hold for the run's longest billed time, and the final move
-- captures the run's price from it. The run keeps the hold's id. Only the service writes it (no
-- column grant to end users: the insert and update grants of 0025 name their columns).
alter table code_executions add column hold_id text;
