-- Review R9: a workspace pool's sub-credit fraction was carried per pool, so one member's fraction
-- could be captured on another member's request (the capture names the member who spent), and each
-- member's charged total drifted from their exact spend by up to a credit per interleaving. Now a
-- pool carries one fraction per member: gateway_carries is keyed by (account, member), '' for an
-- account's own spend (a user's account, and a pool's spend from before this migration), and each
-- request records which carry it joined, so `tally reconcile` checks every carry against exactly
-- its requests (docs/gateway.md, "Prices and exact costs").
alter table gateway_carries add column member_id text not null default '';
alter table gateway_carries drop constraint gateway_carries_pkey;
alter table gateway_carries add primary key (account_id, member_id);

-- The member whose carry a settled request joined: '' for the account's own carry. Null on the
-- requests settled before this migration: they joined their account's one carry (member '').
alter table gateway_requests add column carry_member_id text;
