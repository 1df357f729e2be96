import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { created } from '../idempotency/idempotency.js';
import { type LedgerOp, type OpResult, transactionBody } from './credits.js';
import type { Book } from './credits.engine.book.js';
import { credit } from './credits.engine.grants.js';

/**
 * Refunds. Without a transaction: new credits (like a grant). Naming a debit or capture: never
 * more than is left to refund on it, given back to the grants it came from, latest-consumed first.
 */
export function refund(b: Book, op: Extract<LedgerOp, { kind: 'refund' }>): OpResult {
  if (!op.transactionId) {
    return credit(b, 'refund', op.amount, op.reason, op.metadata, { class: 'default', source: 'refund', expiresAt: null, priority: 0 });
  }
  const target = b.targets.get(op.transactionId);
  if (!target || target.accountId !== b.account.id) throw errors.notFound('Transaction', op.transactionId);
  if (target.type !== 'debit' && target.type !== 'capture') {
    throw errors.invalidRequest(`Only debits and captures can be refunded; ${op.transactionId} is a ${target.type}`, {
      field: 'transaction_id',
    });
  }
  const refundable = -target.amount - target.refunded;
  if (op.amount > refundable) {
    throw errors.conflict(`Refund exceeds what is left to refund on ${op.transactionId} (${refundable})`, {
      transaction_id: op.transactionId,
      refundable,
    });
  }
  const entryId = newId('transaction');
  // Give the credits back to the grants they came from, latest-consumed first; a grant that has
  // expired meanwhile gets its share as a fresh, non-expiring refund grant of the same class.
  let left = op.amount;
  for (const alloc of [...target.allocations].reverse()) {
    if (left === 0) break;
    const restoredAlready = target.restoredByGrant.get(alloc.grantId) ?? 0;
    const give = Math.min(alloc.amount - restoredAlready, left);
    if (give <= 0) continue;
    const grant = b.grants.get(alloc.grantId);
    target.restoredByGrant.set(alloc.grantId, restoredAlready + give);
    left -= give;
    if (grant && (!grant.expiresAt || grant.expiresAt.getTime() > b.now.getTime())) {
      grant.remaining += give;
      grant.expiredAt = null;
      grant.dirty = true;
      b.account.balance += give;
      b.allocate(entryId, grant.id, give);
    } else {
      const fresh = b.newGrant(give, { class: grant?.class ?? 'default', source: 'refund', expiresAt: null, priority: 0 }, {});
      fresh.transactionId = entryId;
      b.allocate(entryId, fresh.id, give);
    }
  }
  if (left > 0) {
    // Older debits without allocation records: a plain refund grant for the rest.
    const fresh = b.newGrant(left, { class: 'default', source: 'refund', expiresAt: null, priority: 0 }, {});
    fresh.transactionId = entryId;
    b.allocate(entryId, fresh.id, left);
  }
  target.refunded += op.amount;
  b.account.totalSpent -= op.amount;
  const entry = b.entry('refund', op.amount, op.reason, op.metadata, { id: entryId, refundOf: target.id, grantId: b.settle(entryId) });
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}
