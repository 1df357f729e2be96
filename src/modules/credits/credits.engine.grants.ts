import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { created } from '../idempotency/idempotency.js';
import { type LedgerOp, type OpResult, transactionBody } from './credits.js';
import type { Book, GrantShape } from './credits.engine.book.js';

/** Grants: new credits, under the balance cap; on an account in debt they repay the debt first. */
export function grant(b: Book, op: Extract<LedgerOp, { kind: 'grant' }>): OpResult {
  if (op.expiresAt && op.expiresAt.getTime() <= b.now.getTime()) {
    throw errors.invalidRequest('expires_at must be in the future', { field: 'expires_at' });
  }
  const result = credit(b, 'grant', op.amount, op.reason, op.metadata, {
    class: op.class,
    source: op.source,
    expiresAt: op.expiresAt,
    priority: op.priority,
    rolloverUntil: op.rolloverUntil ?? null,
  });
  // The grant's answer is the event's body: the entry and the balance it left.
  if (result.ok) b.tell('credits.granted', result.value as Record<string, unknown>);
  return result;
}

/** Adds credits as a new grant: grants, positive adjustments, refunds not tied to a debit. */
export function credit(
  b: Book,
  type: 'grant' | 'adjustment' | 'refund',
  amount: number,
  reason: string,
  metadata: Record<string, unknown>,
  shape: GrantShape = { class: 'default', source: type, expiresAt: null, priority: 0 },
): OpResult {
  b.assertUnderCap(amount);
  if (b.debts().length > 0) return creditOverDebt(b, type, amount, reason, metadata, shape);
  const g = b.newGrant(amount, shape, metadata);
  const entry = b.entry(type, amount, reason, metadata, { grantId: g.id });
  g.transactionId = entry.id;
  if (type === 'refund') b.account.totalSpent -= amount;
  else b.account.totalCredited += amount;
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}

/**
 * New credits on an account in debt pay the debt off first (oldest debt grant first); only the
 * rest stays spendable. The entry is allocated to the debt grants it repaid and to the new grant,
 * so `balance = Σ grants.remaining` holds throughout.
 *
 * The new grant is made for the whole amount, with what repaid debt already gone out of it
 * (remaining = the rest, 0 when the debt took everything), and the entry names it. So what tracks
 * a grant by the entry's `grant_id` — a plan's allowance window, whose take-back claws back what
 * the grant gave out (amount − remaining − expired) and whose end expires what is left — sees the
 * debt it repaid as given out (review attack 4: the entry used to name no grant, or the debt, and
 * a plan bought in debt and taken back clawed back nothing, or more than it gave).
 */
function creditOverDebt(
  b: Book,
  type: 'grant' | 'adjustment' | 'refund',
  amount: number,
  reason: string,
  metadata: Record<string, unknown>,
  shape: GrantShape,
): OpResult {
  const entryId = newId('transaction');
  let left = amount;
  for (const debt of b.debts()) {
    if (left === 0) break;
    const pay = Math.min(left, -debt.remaining);
    debt.remaining += pay;
    debt.dirty = true;
    b.account.balance += pay;
    b.allocate(entryId, debt.id, pay);
    left -= pay;
  }
  // The debt took `amount − left` of it (already in the balance): only `left` is still there.
  const g = b.newGrant(amount, shape, metadata, left);
  g.transactionId = entryId;
  if (left > 0) b.allocate(entryId, g.id, left);
  // Allocation rows stay (the debt's share is at least one): the entry names its grant, the rows say where the credits went.
  const entry = b.entry(type, amount, reason, metadata, { id: entryId, grantId: g.id });
  if (type === 'refund') b.account.totalSpent -= amount;
  else b.account.totalCredited += amount;
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}
