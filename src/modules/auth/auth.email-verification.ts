import { createHash, randomBytes } from 'node:crypto';
import type { EmailVerificationConfig } from '../../config/config.js';
import type { Db, Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { userLockEmail, userMarkEmailVerified } from '../users/users.repository.js';
import {
  verificationTokenFind,
  verificationTokenInsert,
  verificationTokensDropUnused,
  verificationTokensDropOthers,
  verificationTokenUse,
  userSetPasswordIfNone,
} from './auth.email-verification.repository.js';

/** `tlyv_` + 256 random bits (base64url). Not `tly_`: that prefix is an API key's. */
const TOKEN_PREFIX = 'tlyv_';

export interface IssuedVerification {
  userId: string;
  email: string;
  token: string;
  expiresAt: Date;
  verifyUrl: string | null;
}

export type RefusalReason = 'invalid' | 'used' | 'expired' | 'email_changed';

const REFUSALS: Record<RefusalReason, string> = {
  invalid: 'This verification token is not valid (unknown, or replaced by a newer one)',
  used: 'This verification token was already used',
  expired: 'This verification token has expired; ask for a new one',
  email_changed: "This verification token was issued for an e-mail address that is no longer the account's",
};

const refuse = (reason: RefusalReason) => errors.invalidRequest(REFUSALS[reason], { field: 'token', reason });

export const hashVerificationToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/**
 * Proving an e-mail address (docs/auth.md). Tally sends no mail: the service asks for a token for a
 * user, mails it (or the ready link) to the address Tally answers with, and the link's page redeems
 * it anonymously. The token is never given to the end user by Tally, so nobody verifies an address
 * they cannot read mail at. Payments match by e-mail only to verified addresses (docs/payments.md).
 */
export class EmailVerificationService {
  constructor(
    private readonly config: EmailVerificationConfig,
    private readonly now: () => Date,
  ) {}

  /** Service only. Runs in the request's transaction (the owning role). */
  async issue(db: Executor, userId: string, expiresInSeconds: number | undefined): Promise<IssuedVerification> {
    // The row lock serialises issuing, redeeming and address changes of one user.
    const user = await userLockEmail(db, userId);
    if (!user) throw errors.notFound('User', userId);
    if (user.email === null) throw errors.invalidState(`User ${userId} has no e-mail address to verify`, { email: null });
    if (user.is_email_verified) {
      throw errors.invalidState(`The e-mail address of user ${userId} is already verified`, { is_email_verified: true });
    }
    await verificationTokensDropUnused(db, userId);
    return this.mint(db, userId, user.email, expiresInSeconds ?? this.config.ttlSeconds, null);
  }

  /**
   * A sign-up's token (docs/auth.md, "Sign-up with confirmation"): carries the password chosen at
   * that sign-up and leaves other pending ones alone, so each sign-up's mail confirms that sign-up.
   * The caller holds the user's row lock.
   */
  issueForSignup(db: Executor, userId: string, email: string, passwordHash: string): Promise<IssuedVerification> {
    return this.mint(db, userId, email, this.config.ttlSeconds, passwordHash);
  }

  private async mint(db: Executor, userId: string, email: string, ttlSeconds: number, passwordHash: string | null): Promise<IssuedVerification> {
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const expiresAt = new Date(this.now().getTime() + ttlSeconds * 1000);
    await verificationTokenInsert(db, {
      id: newId('emailVerification'),
      user_id: userId,
      email,
      token_hash: hashVerificationToken(token),
      expires_at: expiresAt,
      password_hash: passwordHash,
    });
    return { userId, email, token, expiresAt, verifyUrl: this.link(token) };
  }

  /**
   * Anonymous: whoever holds the token (it was mailed to the address) verifies that address, once.
   * Its own short transaction; locks the user, then the token (the order issuing and address
   * changes take them in), so a concurrent change of address or a second redeemer waits and then
   * sees the outcome.
   */
  async redeem(db: Db, token: string): Promise<{ email: string; emailVerifiedAt: Date }> {
    const tokenHash = hashVerificationToken(token);
    return db.transaction().execute(async (trx) => {
      const peek = await verificationTokenFind(trx, tokenHash);
      if (!peek) throw refuse('invalid');
      const user = await userLockEmail(trx, peek.user_id);
      const row = await verificationTokenFind(trx, tokenHash, true);
      if (!row || !user) throw refuse('invalid');
      if (row.used_at !== null) throw refuse('used');
      if (new Date(row.expires_at).getTime() <= this.now().getTime()) throw refuse('expired');
      if (user.email === null || user.email.toLowerCase() !== row.email.toLowerCase()) throw refuse('email_changed');
      await verificationTokenUse(trx, row.id, this.now());
      const verified = await userMarkEmailVerified(trx, user.id, row.email);
      if (!verified?.email || !verified.email_verified_at) throw refuse('email_changed');
      // A sign-up's token sets the password chosen at that sign-up — only on an account that has
      // none yet (a password set since, by a reset, stays); the other pending sign-ups end here.
      if (row.password_hash) await userSetPasswordIfNone(trx, user.id, row.password_hash);
      await verificationTokensDropOthers(trx, user.id, row.id);
      return { email: verified.email, emailVerifiedAt: new Date(verified.email_verified_at) };
    });
  }

  private link(token: string): string | null {
    return this.config.urlTemplate ? verificationLink(this.config.urlTemplate, token) : null;
  }
}

/** TALLY_EMAIL_VERIFY_URL with the token: `{token}` replaced (URL-encoded), or else `?token=` added. */
export function verificationLink(template: string, token: string): string {
  if (template.includes('{token}')) return template.split('{token}').join(encodeURIComponent(token));
  const url = new URL(template);
  url.searchParams.set('token', token);
  return url.toString();
}
