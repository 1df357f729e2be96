-- Refresh tokens (issue 18, "Sign-in that a real app can ship"). A login or sign-up starts a session
-- (user_sessions, 0001) and hands out a short-lived access JWT plus a refresh token; the refresh
-- token buys the next pair exactly once (rotation). The tokens of one session form its family:
-- presenting a token that was already rotated means two parties hold it (a stolen copy, or the
-- owner after a thief), so the whole family — the session — is revoked (docs/auth.md, "Refresh").
--
-- Only the SHA-256 of a token is stored (256 random bits: no slow hash needed, like api_keys).
-- Row-level security on, no grant and no policy: only the service (owning role) reads or writes it.
create table refresh_tokens (
  id          text primary key,
  session_id  text not null references user_sessions (id) on delete cascade,
  user_id     text not null references users (id) on delete cascade,
  token_hash  text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  -- The token this one replaced: the family's chain, for the audit of a reuse.
  parent_id   text references refresh_tokens (id) on delete set null,
  expires_at  timestamptz not null,
  -- Set when the token is exchanged; a second exchange is a reuse.
  used_at     timestamptz,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create trigger refresh_tokens_updated_at before update on refresh_tokens for each row execute function set_updated_at();
create index refresh_tokens_session_idx on refresh_tokens (session_id, created_at desc);
create index refresh_tokens_user_idx on refresh_tokens (user_id);
alter table refresh_tokens enable row level security;

-- Why a session ended (null while live): 'logout', 'refresh_reuse'. Shown on the session.
alter table user_sessions add column revoked_reason text
  check (revoked_reason is null or revoked_reason in ('logout', 'refresh_reuse'));
-- A user logs out through their own role (0001 lets them revoke their session); they may say why.
grant update (revoked_reason) on user_sessions to authenticated;
