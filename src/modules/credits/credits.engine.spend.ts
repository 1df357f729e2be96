import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { must } from '../../lib/must.js';
import { created } from '../idempotency/idempotency.js';
import { DEBT_SOURCE, type LedgerOp, type OpResult, transactionBody } from './credits.js';
import type { Book } from './credits.engine.book.js';
import { coverableOf, inConsumeTier } from './credits.engine.order.js';

/** What a `consume` gave: the entry (null when nothing was taken) and the amount per tier. */
export interface ConsumeResult {
  transactionId: string | null;
  taken: number;
  byTier: { name: string; amount: number }[];
  balanceAfter: number;
}

/** Takes credits out in consumption order: debits and negative adjustments, never beyond available. */
export function spend(b: Book, type: 'debit' | 'adjustment', amount: number, reason: string, metadata: Record<string, unknown>, memberId: string | null = null): OpResult {
  b.assertAvailable(amount);
  const entryId = newId('transaction');
  b.consume(entryId, amount);
  const entry = b.entry(type, -amount, reason, metadata, { id: entryId, grantId: b.settle(entryId), memberId });
  if (type === 'debit') b.account.totalSpent += amount;
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}

/** Usage: tier by tier, up to what is available; one `debit` entry for all of it. */
export function consumeTiers(b: Book, op: Extract<LedgerOp, { kind: 'consume' }>): { outcome: OpResult; consumed: ConsumeResult } {
  const plan = coverableOf(b.spendable(), b.available(), op.tiers, op.amount);
  const taken = plan.reduce((s, t) => s + t.amount, 0);
  let transactionId: string | null = null;
  if (op.amount > 0 && taken < op.amount) {
    // The caller asks only for what is coverable; anything else is a bug upstream.
    throw errors.insufficientCredits(`Not enough credits: ${op.amount} needed, ${taken} available`, {
      needed: op.amount,
      available: taken,
    });
  }
  if (taken > 0) {
    const entryId = newId('transaction');
    for (const tier of op.tiers) {
      let left = must(plan.find((p) => p.name === tier.name), 'every tier is in the plan').amount;
      for (const grant of b.spendable().filter((g) => inConsumeTier(g, tier, op.tiers))) {
        if (left === 0) break;
        const take = Math.min(grant.remaining, left);
        b.take(grant, take);
        b.allocate(entryId, grant.id, take);
        left -= take;
      }
    }
    b.entry('debit', -taken, op.reason, op.metadata, { id: entryId, grantId: b.settle(entryId), memberId: op.memberId ?? null });
    b.account.totalSpent += taken;
    transactionId = entryId;
  }
  return {
    outcome: created({ transaction_id: transactionId, taken, balance: b.balance() }),
    consumed: { transactionId, taken, byTier: plan, balanceAfter: b.account.balance },
  };
}

/**
 * Takes back what a payment granted: first from the payment's own grant, then from other
 * grants in consumption order — but never the credits backing open holds (a capture must stay
 * payable). Whatever is left becomes a new `debt` grant with negative remaining: the balance
 * goes below zero, available with it, and spending is refused until grants repay it. Neither
 * spent nor credited in the lifetime totals (like expiry).
 */
export function clawback(b: Book, op: Extract<LedgerOp, { kind: 'clawback' }>): OpResult {
  const entryId = newId('transaction');
  let left = op.amount;
  let free = Math.max(0, b.free());
  // Past-due credits back open holds only; what is free is in grants that have not expired.
  const live = b.spendable();
  const own = op.transactionId ? live.find((g) => g.transactionId === op.transactionId && g.source !== DEBT_SOURCE) : undefined;
  for (const grant of own ? [own, ...live.filter((g) => g !== own)] : live) {
    if (left === 0 || free === 0) break;
    const take = Math.min(grant.remaining, left, free);
    b.take(grant, take);
    b.allocate(entryId, grant.id, take);
    left -= take;
    free -= take;
  }
  if (left > 0) {
    const debt = b.newGrant(left, { class: 'default', source: DEBT_SOURCE, expiresAt: null, priority: 0 }, op.metadata);
    // newGrant added `left`; a debt grant owes it instead: remaining -left, balance down by left.
    debt.remaining = -left;
    debt.transactionId = entryId;
    b.account.balance -= 2 * left;
    b.allocate(entryId, debt.id, left);
  }
  const entry = b.entry('clawback', -op.amount, op.reason, op.metadata, { id: entryId, grantId: b.settle(entryId) });
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}
