-- Sign-up that does not say whether an address is registered (issue 18; docs/auth.md, "Sign-up
-- with confirmation"). With TALLY_SIGNUP_CONFIRM_EMAIL on, sign-up creates (or finds) an account
-- without a password and mails a verification token that carries the password hash chosen at that
-- sign-up. Redeeming the token proves the address and sets that password, if the account still has
-- none. Each sign-up keeps its own token, so whoever holds the mailbox decides which sign-up wins —
-- a stranger who signed up first with someone else's address cannot get in by it.
alter table email_verification_tokens add column password_hash text
  check (password_hash is null or length(password_hash) between 20 and 512);
