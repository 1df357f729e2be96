import type { Executor } from '../../db/database.js';

/** SQL for e-mail verification tokens: the service's own table (no end-user grant, RLS on). */

export interface VerificationTokenInsert {
  id: string;
  user_id: string;
  email: string;
  token_hash: string;
  expires_at: Date;
}

export async function verificationTokenInsert(db: Executor, row: VerificationTokenInsert): Promise<void> {
  await db.insertInto('email_verification_tokens').values(row).execute();
}

/** A user has one live token at a time: issuing a new one drops the unused ones. */
export async function verificationTokensDropUnused(db: Executor, userId: string): Promise<void> {
  await db.deleteFrom('email_verification_tokens').where('user_id', '=', userId).where('used_at', 'is', null).execute();
}

/** Finds a token by its hash; `lock` takes the row lock (redeeming: concurrent redeemers wait). */
export async function verificationTokenFind(db: Executor, tokenHash: string, lock = false) {
  const q = db
    .selectFrom('email_verification_tokens')
    .select(['id', 'user_id', 'email', 'expires_at', 'used_at'])
    .where('token_hash', '=', tokenHash);
  return (lock ? q.forUpdate() : q).executeTakeFirst();
}

export async function verificationTokenUse(db: Executor, id: string, at: Date): Promise<void> {
  await db.updateTable('email_verification_tokens').set({ used_at: at }).where('id', '=', id).where('used_at', 'is', null).execute();
}
