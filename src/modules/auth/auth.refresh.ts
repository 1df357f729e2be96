import { randomBytes } from 'node:crypto';
import { DomainError } from '../../core/errors.js';
import type { Db, Executor } from '../../db/database.js';
import { sha256Hex } from '../../lib/hash.js';
import { newId } from '../../lib/ids.js';
import { refreshInsert, refreshLock, refreshMarkUsed, sessionEnd, sessionExtend } from './auth.refresh.repository.js';

/**
 * Refresh tokens: `tlyr_` + 256 random bits (base64url). Each is exchanged once for the next
 * (rotation); a second exchange of the same token revokes its whole family — the session — because
 * two parties hold it and Tally cannot tell which is the owner (docs/auth.md, "Refresh").
 */
export const REFRESH_PREFIX = 'tlyr_';
export const hashRefreshToken = (token: string): string => sha256Hex(token);

/** Why a refresh was refused; each is a 401 except a disabled account (403). */
export type RefreshRefusal = 'invalid' | 'expired' | 'reused' | 'session_ended' | 'disabled';

export type RefreshOutcome =
  | { ok: true; userId: string; sessionId: string; token: string; expiresAt: Date }
  | { ok: false; reason: RefreshRefusal };

export function refreshError(reason: RefreshRefusal): DomainError {
  if (reason === 'disabled') return new DomainError('forbidden', 'This account is disabled');
  const message: Record<Exclude<RefreshRefusal, 'disabled'>, string> = {
    invalid: 'Unknown refresh token',
    expired: 'This refresh token has expired; log in again',
    reused: 'This refresh token was already used; the session has been ended, log in again',
    session_ended: 'This session has ended; log in again',
  };
  return new DomainError('unauthenticated', message[reason], { reason });
}

export class RefreshTokens {
  constructor(
    private readonly ttlSeconds: number,
    private readonly now: () => Date,
  ) {}

  /** The first token of a new session's family. */
  async issue(db: Executor, userId: string, sessionId: string): Promise<{ token: string; expiresAt: Date }> {
    return this.insert(db, userId, sessionId, null);
  }

  expiryFromNow(): Date {
    return new Date(this.now().getTime() + this.ttlSeconds * 1000);
  }

  /**
   * Exchanges a token for the next one. A reuse ends the session in its own committed transaction
   * (the refusal must not roll the revocation back), then refuses.
   */
  async rotate(db: Db, token: string): Promise<RefreshOutcome> {
    if (!token.startsWith(REFRESH_PREFIX) || token.length > 128) return { ok: false, reason: 'invalid' };
    const hash = hashRefreshToken(token);
    return db.transaction().execute(async (trx): Promise<RefreshOutcome> => {
      const row = await refreshLock(trx, hash);
      if (!row) return { ok: false, reason: 'invalid' };
      const now = this.now();
      if (row.session_revoked_at) return { ok: false, reason: 'session_ended' };
      if (row.used_at) {
        await sessionEnd(trx, row.session_id, 'refresh_reuse', now);
        return { ok: false, reason: 'reused' };
      }
      if (row.expires_at.getTime() <= now.getTime()) return { ok: false, reason: 'expired' };
      if (!row.is_active) return { ok: false, reason: 'disabled' };
      await refreshMarkUsed(trx, row.id, now);
      const next = await this.insert(trx, row.user_id, row.session_id, row.id);
      await sessionExtend(trx, row.session_id, next.expiresAt, now);
      return { ok: true, userId: row.user_id, sessionId: row.session_id, ...next };
    });
  }

  private async insert(db: Executor, userId: string, sessionId: string, parentId: string | null) {
    const token = REFRESH_PREFIX + randomBytes(32).toString('base64url');
    const expiresAt = this.expiryFromNow();
    await refreshInsert(db, {
      id: newId('refreshToken'),
      session_id: sessionId,
      user_id: userId,
      token_hash: hashRefreshToken(token),
      parent_id: parentId,
      expires_at: expiresAt,
    });
    return { token, expiresAt };
  }
}
