import { randomBytes } from 'node:crypto';
import type { PasswordResetConfig } from '../../config/config.js';
import type { Db } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { sha256Hex } from '../../lib/hash.js';
import { newId } from '../../lib/ids.js';
import type { MailService } from '../mail/mail.service.js';
import { userFindCredentials, userLockEmail } from '../users/users.repository.js';
import type { PasswordHasher } from './auth.passwords.js';
import { verificationLink } from './auth.email-verification.js';
import {
  resetTokenFind,
  resetTokenInsert,
  resetTokensDropUnused,
  resetTokenUse,
  sessionsEndAll,
  userSetPassword,
} from './auth.password-reset.repository.js';

/** `tlyp_` + 256 random bits (base64url); stored as SHA-256 only. */
const TOKEN_PREFIX = 'tlyp_';
export const hashResetToken = (token: string): string => sha256Hex(token);


export type ResetRefusal = 'invalid' | 'used' | 'expired' | 'email_changed';

const REFUSALS: Record<ResetRefusal, string> = {
  invalid: 'This password reset token is not valid (unknown, or replaced by a newer one)',
  used: 'This password reset token was already used',
  expired: 'This password reset token has expired; ask for a new one',
  email_changed: "This password reset token was mailed to an address that is no longer the account's",
};
const refuse = (reason: ResetRefusal) => errors.invalidRequest(REFUSALS[reason], { field: 'token', reason });

/**
 * Forgotten passwords (docs/auth.md, "Password reset"). Asking never says whether the address has
 * an account (the same answer either way; only the owner gets mail); the token is mailed to the
 * address and nowhere else, works once, expires, and a new password ends every session.
 */
export class PasswordResetService {
  constructor(
    private readonly config: PasswordResetConfig,
    private readonly mail: MailService,
    private readonly now: () => Date,
    private readonly passwords: PasswordHasher,
  ) {}

  /** Anonymous. Resolves the same way whether or not an account has this address. */
  async request(db: Db, email: string): Promise<void> {
    const found = await userFindCredentials(db, email);
    if (!found || !found.is_active || !found.email) return;
    const userId = found.id;
    await db.transaction().execute(async (trx) => {
      // The row lock orders this with address changes: the token goes to the address the user has now.
      const user = await userLockEmail(trx, userId);
      if (!user?.email) return;
      const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const expiresAt = new Date(this.now().getTime() + this.config.ttlSeconds * 1000);
      await resetTokensDropUnused(trx, userId);
      await resetTokenInsert(trx, { id: newId('passwordReset'), user_id: userId, email: user.email, token_hash: hashResetToken(token), expires_at: expiresAt });
      const link = this.config.urlTemplate ? verificationLink(this.config.urlTemplate, token) : null;
      const minutes = Math.round(this.config.ttlSeconds / 60);
      await this.mail.send(trx, {
        to: user.email,
        template: 'auth.password_reset',
        userId,
        subject: 'Reset your password',
        text: [
          'Someone asked to reset the password of the account with this address.',
          link ? `Choose a new password here (the link works once, for ${minutes} minutes):\n\n${link}` : `Your reset code (it works once, for ${minutes} minutes):\n\n${token}`,
          'If it was not you, ignore this mail: your password stays as it is.',
        ].join('\n\n'),
      });
    });
  }

  /**
   * Anonymous: whoever holds the token sets a new password, once. Hashing runs before the
   * transaction; inside it the user is locked, then the token (the order requests take them in).
   */
  async confirm(db: Db, token: string, password: string): Promise<{ userId: string; sessionsEnded: number }> {
    const tokenHash = hashResetToken(token);
    const passwordHash = await this.passwords.hash(password);
    return db.transaction().execute(async (trx) => {
      const peek = await resetTokenFind(trx, tokenHash);
      if (!peek) throw refuse('invalid');
      const user = await userLockEmail(trx, peek.user_id);
      const row = await resetTokenFind(trx, tokenHash, true);
      if (!row || !user) throw refuse('invalid');
      if (row.used_at !== null) throw refuse('used');
      if (row.expires_at.getTime() <= this.now().getTime()) throw refuse('expired');
      if (user.email === null || user.email.toLowerCase() !== row.email.toLowerCase()) throw refuse('email_changed');
      await resetTokenUse(trx, row.id, this.now());
      await userSetPassword(trx, user.id, passwordHash);
      const sessionsEnded = await sessionsEndAll(trx, user.id, this.now());
      return { userId: user.id, sessionsEnded };
    });
  }
}
