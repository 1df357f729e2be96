-- E-mail verification (issue 13, item 7). Payments are matched to a user by e-mail only when that
-- user's address is verified (docs/payments.md, "Matching"); a single-use token proves an address
-- (docs/auth.md). users.is_email_verified / email_verified_at exist since 0001 (seed 000); this
-- migration adds the tokens and makes the database keep the flag honest:
--   * a changed address is never verified by carry-over, whoever changes it;
--   * is_email_verified and email_verified_at always agree, and an address-less user is unverified;
--   * an end user's role can never set any of it (no column grant since 0001, and a refusal here).

-- ---------------------------------------------------------------------------------------------
-- email_verification_tokens: one row per token the service asked for. Only the SHA-256 of the
-- token is stored (it is 256 random bits: no slow hash needed, like api_keys.key_hash). Bound to
-- the user and to the address it was sent to: redeeming checks that address is still the user's.
-- ---------------------------------------------------------------------------------------------
create table email_verification_tokens (
  id          text primary key,
  user_id     text not null references users (id) on delete cascade,
  email       text not null check (length(email) between 3 and 320),
  token_hash  text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  expires_at  timestamptz not null,
  used_at     timestamptz,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index email_verification_tokens_user_idx on email_verification_tokens (user_id, created_at desc);
create trigger email_verification_tokens_updated_at before update on email_verification_tokens
  for each row execute function set_updated_at();

-- Rows written before this migration: make the pair agree (nothing else wrote them apart).
update users set is_email_verified = false, email_verified_at = null
  where (email is null or not is_email_verified) and (is_email_verified or email_verified_at is not null);
update users set email_verified_at = updated_at where is_email_verified and email_verified_at is null;

-- ---------------------------------------------------------------------------------------------
-- The verified flag follows the address. When lower(email) changes, the user's unused tokens are
-- dropped and the flag clears — unless the same statement also sets a new email_verified_at (the
-- service vouching for the new address in the same request). Request roles may not touch these
-- columns at all: the column grants of 0001 already say so; this says it again should a later
-- migration ever widen a grant.
-- ---------------------------------------------------------------------------------------------
-- `set search_path from current`: queries are schema-qualified, connections have no search_path.
create function users_email_verification() returns trigger language plpgsql set search_path from current as $$
begin
  if current_user in ('anon', 'authenticated') then
    if tg_op = 'INSERT' and (new.is_email_verified or new.email_verified_at is not null) then
      raise exception 'only the service may mark an e-mail address verified' using errcode = '42501';
    end if;
    if tg_op = 'UPDATE' and (new.email is distinct from old.email
        or new.is_email_verified is distinct from old.is_email_verified
        or new.email_verified_at is distinct from old.email_verified_at) then
      raise exception 'only the service may change an e-mail address or its verification' using errcode = '42501';
    end if;
  end if;
  if tg_op = 'UPDATE' and lower(new.email) is distinct from lower(old.email) then
    delete from email_verification_tokens t where t.user_id = new.id and t.used_at is null;
    if new.email_verified_at is not distinct from old.email_verified_at then
      new.is_email_verified := false;
    end if;
  end if;
  if new.email is null or not new.is_email_verified then
    new.is_email_verified := false;
    new.email_verified_at := null;
  elsif new.email_verified_at is null then
    new.email_verified_at := now();
  end if;
  return new;
end $$;
create trigger users_email_verification before insert or update of email, is_email_verified, email_verified_at on users
  for each row execute function users_email_verification();

-- ---------------------------------------------------------------------------------------------
-- Row-level security: tokens are the service's own — no grant, no policy. An end user reads
-- their own is_email_verified / email_verified_at (0001's select grant) and writes neither.
-- ---------------------------------------------------------------------------------------------
alter table email_verification_tokens enable row level security;
revoke all on email_verification_tokens from anon, authenticated;
revoke update (email, is_email_verified, email_verified_at) on users from anon, authenticated;

do $$
begin
  execute format('revoke execute on all functions in schema %I from public, anon, authenticated', current_schema());
end $$;
grant execute on function is_workspace_member(text), workspace_role_of(text), shares_workspace_with(text)
  to authenticated;
