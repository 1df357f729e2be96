-- Mail and password reset (issue 18, "Sign-in that a real app can ship").
--
-- mail_outbox: every mail Tally sends is written here in the transaction that decides to send it
-- (a reset token and its mail commit together or not at all) and delivered by the background queue
-- (type `mail.send`, docs/queue.md) with retries. The body carries secrets (reset links), so it is
-- sealed with the encryption key (aad = the row id) and cleared once an SMTP server has taken it.
-- Without SMTP the body is kept (sealed) so the operator can read it (GET /v1/mail/:id, service).
create table mail_outbox (
  id            text primary key,
  to_address    text not null check (length(to_address) between 3 and 320),
  template      text not null check (template ~ '^[a-z][a-z0-9_.]{0,63}$'),
  subject       text not null check (length(subject) between 1 and 998),
  body_enc      text,
  key_id        text,
  user_id       text references users (id) on delete set null,
  status        text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
  transport     text check (transport in ('smtp', 'log')),
  attempts      integer not null default 0 check (attempts >= 0),
  last_error    text check (length(last_error) <= 2000),
  sent_at       timestamptz,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  check ((body_enc is null) = (key_id is null))
);
create index mail_outbox_created_idx on mail_outbox (created_at desc, id desc);
create index mail_outbox_user_idx on mail_outbox (user_id) where user_id is not null;
create trigger mail_outbox_updated_at before update on mail_outbox for each row execute function set_updated_at();
alter table mail_outbox enable row level security;

-- password_reset_tokens: like email_verification_tokens (0010): SHA-256 only, single use, expiring,
-- bound to the user and the address the link was mailed to; one live token per user.
create table password_reset_tokens (
  id          text primary key,
  user_id     text not null references users (id) on delete cascade,
  email       text not null check (length(email) between 3 and 320),
  token_hash  text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  expires_at  timestamptz not null,
  used_at     timestamptz,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index password_reset_tokens_user_idx on password_reset_tokens (user_id, created_at desc);
create trigger password_reset_tokens_updated_at before update on password_reset_tokens for each row execute function set_updated_at();
alter table password_reset_tokens enable row level security;

-- A password reset signs the account out everywhere.
alter table user_sessions drop constraint user_sessions_revoked_reason_check;
alter table user_sessions add constraint user_sessions_revoked_reason_check
  check (revoked_reason is null or revoked_reason in ('logout', 'refresh_reuse', 'password_reset'));
