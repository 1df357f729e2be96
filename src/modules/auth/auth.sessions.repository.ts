import type { Executor } from '../../db/database.js';

export interface SessionInsert {
  id: string;
  user_id: string;
  ip_address: string | null;
  user_agent: string | null;
  device_type: string | null;
  browser: string | null;
  os: string | null;
  expires_at: Date;
}

/** Ends a session; its tokens stop working. Returns false when it was not the user's live session. */
export async function sessionRevoke(db: Executor, userId: string, sessionId: string): Promise<boolean> {
  const res = await db
    .updateTable('user_sessions')
    .set({ revoked_at: new Date(), revoked_reason: 'logout' })
    .where('id', '=', sessionId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

export async function sessionInsert(db: Executor, row: SessionInsert): Promise<void> {
  await db.insertInto('user_sessions').values(row).execute();
}
