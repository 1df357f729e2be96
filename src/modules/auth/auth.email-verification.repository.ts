import type { Executor } from '../../db/database.js';

/** SQL for e-mail verification tokens: the service's own table (no end-user grant, RLS on). */

export interface VerificationTokenInsert {
  id: string;
  user_id: string;
  email: string;
  token_hash: string;
  expires_at: Date;
  /** A sign-up's chosen password (argon2id), set on the account when the token is redeemed. */
  password_hash?: string | null;
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
    .select(['id', 'user_id', 'email', 'expires_at', 'used_at', 'password_hash'])
    .where('token_hash', '=', tokenHash);
  return (lock ? q.forUpdate() : q).executeTakeFirst();
}

export async function verificationTokenUse(db: Executor, id: string, at: Date): Promise<void> {
  await db.updateTable('email_verification_tokens').set({ used_at: at }).where('id', '=', id).where('used_at', 'is', null).execute();
}

/** Redeeming one token ends the others (sign-ups' pending tokens included). */
export async function verificationTokensDropOthers(db: Executor, userId: string, keepId: string): Promise<void> {
  await db.deleteFrom('email_verification_tokens').where('user_id', '=', userId).where('used_at', 'is', null).where('id', '<>', keepId).execute();
}

/** Sets a password only on an account that has none (a pending sign-up); true if it did. */
export async function userSetPasswordIfNone(db: Executor, userId: string, passwordHash: string): Promise<boolean> {
  const r = await db.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', userId).where('password_hash', 'is', null).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}
