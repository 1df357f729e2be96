import type { Executor } from '../../db/database.js';

export interface RefreshInsert {
  id: string;
  session_id: string;
  user_id: string;
  token_hash: string;
  parent_id: string | null;
  expires_at: Date;
}

export async function refreshInsert(db: Executor, row: RefreshInsert): Promise<void> {
  await db.insertInto('refresh_tokens').values(row).execute();
}

/**
 * The token with its session, the token's row locked: two exchanges of one token run one after
 * the other, so the second sees the first's `used_at` and is treated as a reuse.
 */
export async function refreshLock(db: Executor, tokenHash: string) {
  return db
    .selectFrom('refresh_tokens as r')
    .innerJoin('user_sessions as s', 's.id', 'r.session_id')
    .innerJoin('users as u', 'u.id', 'r.user_id')
    .select([
      'r.id',
      'r.session_id',
      'r.user_id',
      'r.expires_at',
      'r.used_at',
      's.revoked_at as session_revoked_at',
      's.expires_at as session_expires_at',
      'u.is_active',
    ])
    .where('r.token_hash', '=', tokenHash)
    .forUpdate('r')
    .executeTakeFirst();
}

export async function refreshMarkUsed(db: Executor, id: string, at: Date): Promise<void> {
  await db.updateTable('refresh_tokens').set({ used_at: at }).where('id', '=', id).execute();
}

/** Ends the session (the token family) for a reason; false when it had already ended. */
export async function sessionEnd(db: Executor, sessionId: string, reason: 'logout' | 'refresh_reuse', at: Date): Promise<boolean> {
  const res = await db
    .updateTable('user_sessions')
    .set({ revoked_at: at, revoked_reason: reason })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** A refresh moves the session's end to its new refresh token's expiry, and counts as activity. */
export async function sessionExtend(db: Executor, sessionId: string, expiresAt: Date, at: Date): Promise<void> {
  await db.updateTable('user_sessions').set({ expires_at: expiresAt, last_activity_at: at }).where('id', '=', sessionId).execute();
}
