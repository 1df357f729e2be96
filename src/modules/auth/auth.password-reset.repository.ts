import type { Executor } from '../../db/database.js';

/** SQL for password reset tokens: the service's own table (no end-user grant, RLS on). */

export interface ResetTokenInsert {
  id: string;
  user_id: string;
  email: string;
  token_hash: string;
  expires_at: Date;
}

export async function resetTokenInsert(db: Executor, row: ResetTokenInsert): Promise<void> {
  await db.insertInto('password_reset_tokens').values(row).execute();
}

/** One live token per user: asking again drops the unused ones (an older mail stops working). */
export async function resetTokensDropUnused(db: Executor, userId: string): Promise<void> {
  await db.deleteFrom('password_reset_tokens').where('user_id', '=', userId).where('used_at', 'is', null).execute();
}

export async function resetTokenFind(db: Executor, tokenHash: string, lock = false) {
  const q = db.selectFrom('password_reset_tokens').select(['id', 'user_id', 'email', 'expires_at', 'used_at']).where('token_hash', '=', tokenHash);
  return (lock ? q.forUpdate() : q).executeTakeFirst();
}

export async function resetTokenUse(db: Executor, id: string, at: Date): Promise<void> {
  await db.updateTable('password_reset_tokens').set({ used_at: at }).where('id', '=', id).execute();
}

export async function userSetPassword(db: Executor, userId: string, passwordHash: string): Promise<void> {
  await db.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', userId).execute();
}

/** A new password signs the account out everywhere: every live session (and so its refresh tokens) ends. */
export async function sessionsEndAll(db: Executor, userId: string, at: Date): Promise<number> {
  const res = await db
    .updateTable('user_sessions')
    .set({ revoked_at: at, revoked_reason: 'password_reset' })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(res.numUpdatedRows);
}
