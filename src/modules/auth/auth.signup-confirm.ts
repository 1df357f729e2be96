import { sql } from 'kysely';
import type { EmailVerificationConfig } from '../../config/config.js';
import type { Db, Executor } from '../../db/database.js';
import type { MailService } from '../mail/mail.service.js';
import { userLockByEmail } from '../users/users.repository.js';
import type { UsersService } from '../users/users.service.js';
import type { EmailVerificationService } from './auth.email-verification.js';
import type { PasswordHasher } from './auth.passwords.js';

/**
 * Sign-up that does not tell a stranger whether an address is registered (docs/auth.md, "Sign-up
 * with confirmation"; on with TALLY_SIGNUP_CONFIRM_EMAIL). Every sign-up gets the same answer; what
 * happens is told only to the address's mailbox:
 *   - a new address: an account without a password is created, and a confirmation mail carries a
 *     token bound to the password chosen now; redeeming it verifies the address and sets it;
 *   - an address whose account is still pending (no password, unverified): one more such mail,
 *     with its own token (each sign-up's mail confirms that sign-up; none replaces another);
 *   - an address with a working account: a mail telling the owner, nothing else changes;
 *   - a disabled account: nothing.
 * The password is hashed before anything else on every path, so the slow part takes as long
 * whether or not the address is known.
 */
export class SignupConfirmation {
  constructor(
    private readonly users: UsersService,
    private readonly verification: EmailVerificationService,
    private readonly mail: MailService,
    private readonly config: EmailVerificationConfig,
    private readonly schema: string,
    private readonly passwords: PasswordHasher,
  ) {}

  async begin(db: Db, email: string, password: string): Promise<void> {
    const passwordHash = await this.passwords.hash(password);
    await db.transaction().execute(async (trx) => {
      // Two sign-ups with one new address queue here instead of racing to insert it.
      await sql`select pg_advisory_xact_lock(hashtext(${`${this.schema}:signup:${email.toLowerCase()}`}))`.execute(trx);
      const found = await userLockByEmail(trx, email);
      if (!found) {
        const user = await this.users.create(trx, { email, provider: 'email', provider_user_id: email.toLowerCase() });
        return this.mailConfirmation(trx, user.id, email, passwordHash);
      }
      if (!found.is_active || !found.email) return;
      if (found.password_hash === null && !found.is_email_verified) return this.mailConfirmation(trx, found.id, found.email, passwordHash);
      await this.mail.send(trx, {
        to: found.email,
        template: 'auth.signup_existing',
        userId: found.id,
        subject: 'You already have an account',
        text: [
          'Someone tried to sign up with this address, which already has an account.',
          'If it was you, log in instead — or reset your password if you have forgotten it.',
          'If it was not you, ignore this mail: nothing about your account has changed.',
        ].join('\n\n'),
      });
    });
  }

  private async mailConfirmation(trx: Executor, userId: string, email: string, passwordHash: string): Promise<void> {
    const issued = await this.verification.issueForSignup(trx, userId, email, passwordHash);
    const hours = Math.round(this.config.ttlSeconds / 3600);
    await this.mail.send(trx, {
      to: email,
      template: 'auth.signup_confirm',
      userId,
      subject: 'Confirm your sign-up',
      text: [
        'Someone signed up with this address.',
        issued.verifyUrl
          ? `If it was you, confirm here (the link works once, for ${hours} hours):\n\n${issued.verifyUrl}`
          : `If it was you, confirm with this code (it works once, for ${hours} hours):\n\n${issued.token}`,
        'If it was not you, ignore this mail: without confirmation the sign-up does nothing.',
      ].join('\n\n'),
    });
  }
}
