import { errors } from '../../core/errors.js';
import type { Book } from './credits.engine.book.js';
import type { LedgerOp, SpenderState } from './credits.js';

/**
 * Workspace pools: a member spends from the pool only with a spending role, and never past their
 * spend cap (docs/ledger.md, "Workspace pools"). The spender's role, cap and what the cap already
 * counts are loaded under the pool account's row lock, so every spend on the pool — from any
 * process — sees the ones before it: the check and the debit are one atomic step.
 */
export type MemberSpend = Extract<LedgerOp, { kind: 'debit' | 'hold' | 'consume' }>;

/** The member an operation spends for, if any. */
export function memberOf(op: LedgerOp): string | null {
  return op.kind === 'debit' || op.kind === 'hold' || op.kind === 'consume' ? (op.memberId ?? null) : null;
}

/** Refuses (throws a refusal) unless the member may spend `amount` from this pool now. */
export function assertMaySpend(b: Book, memberId: string, amount: number): SpenderState {
  const workspaceId = b.account.workspaceId;
  if (workspaceId === null) {
    throw errors.invalidRequest('A member spends only from a workspace pool: name workspace_id with user_id', { field: 'workspace_id' });
  }
  const s = b.spenders.get(memberId);
  // Not a member: the same answer as a workspace that does not exist (nothing is disclosed).
  if (!s || s.role === null) throw errors.notFound('Workspace', workspaceId);
  if (s.role === 'viewer') throw errors.forbidden('A viewer cannot spend from the workspace pool');
  if (s.cap !== null && amount > s.cap - s.used) {
    throw errors.budgetExceeded(`This would exceed the member's spend cap on the pool (${s.cap} per ${s.period})`, {
      reason: 'member_spend_cap',
      user_id: memberId,
      cap: s.cap,
      period: s.period,
      used: s.used,
      requested: amount,
    });
  }
  return s;
}

/** What a successful spend counts against the member's cap (a hold counts until it resolves). */
export function countSpend(s: SpenderState, amount: number): void {
  s.used += amount;
}
