import argon2 from 'argon2';
import type { PasswordHashing } from '../../config/config.js';

/** The library's defaults (m=64 MiB, t=3, p=4), which follow OWASP guidance: every deployment hashes with these. */
export const PRODUCTION_PASSWORD_HASHING: PasswordHashing = { memoryKib: 65_536, timeCost: 3, parallelism: 4 };

/**
 * Hashes and verifies passwords with argon2id. Verification reads the cost from the stored hash,
 * so hashes made with other parameters keep working. Only the test harness builds one with a
 * cheaper cost (config `auth.passwordHashing`, never read from the environment): a sign-up then
 * costs milliseconds instead of half a second on a busy CI core.
 */
export class PasswordHasher {
  private dummyHash: Promise<string> | null = null;

  constructor(private readonly cost: PasswordHashing = PRODUCTION_PASSWORD_HASHING) {}

  hash(password: string): Promise<string> {
    return argon2.hash(password, { type: argon2.argon2id, memoryCost: this.cost.memoryKib, timeCost: this.cost.timeCost, parallelism: this.cost.parallelism });
  }

  async verify(hash: string, password: string): Promise<boolean> {
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false;
    }
  }

  /**
   * Spends the same time as a real verification when no user matches, so response timing does not
   * tell an attacker which e-mails have accounts.
   */
  async verifyAgainstDummy(password: string): Promise<false> {
    this.dummyHash ??= this.hash('tally-dummy-password-for-timing');
    await this.verify(await this.dummyHash, password);
    return false;
  }
}
