-- A key's own gateway spend, exact in micro-credits (attacker review #12). Before, settlement added
-- to credits_used the whole credits the *account's* running total crossed, so a key whose requests
-- left fractions that another key's requests then crossed was counted 0 while it spent: its budget
-- was understated without bound. Now each key carries its own fraction: spent_micros is the exact sum
-- of its settled requests' costs, credits_used = floor(spent_micros / 10^6), and the budget is
-- checked in micro-credits (docs/gateway.md, "Key limits").
alter table api_keys
  add column gateway_spent_micros bigint not null default 0 check (gateway_spent_micros >= 0);

-- The audit triggers (0028) skip updates that only move counters: this one is a counter too (every
-- settlement moves it), so the api_keys triggers are made again with it among the noise columns.
drop trigger api_keys_audit on api_keys;
drop trigger api_keys_audit_update on api_keys;
create trigger api_keys_audit after insert or delete on api_keys for each row
  execute function audit_capture('api_key', 'id', 'key_hash', 'last_used_at,request_count,credits_used,gateway_spent_micros');
create trigger api_keys_audit_update after update on api_keys for each row
  when ((to_jsonb(old) - '{updated_at,last_used_at,request_count,credits_used,gateway_spent_micros}'::text[])
        is distinct from (to_jsonb(new) - '{updated_at,last_used_at,request_count,credits_used,gateway_spent_micros}'::text[]))
  execute function audit_capture('api_key', 'id', 'key_hash', 'last_used_at,request_count,credits_used,gateway_spent_micros');

-- What the keys had spent so far is known to the credit only (after the triggers: not an audited change).
update api_keys set gateway_spent_micros = credits_used * 1000000 where credits_used > 0;
