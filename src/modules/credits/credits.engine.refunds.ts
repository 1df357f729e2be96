import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { created } from '../idempotency/idempotency.js';
import { must } from '../../lib/must.js';
import { type GrantState, type LedgerOp, type OpResult, transactionBody } from './credits.js';
import type { Book } from './credits.engine.book.js';
import { credit } from './credits.engine.grants.js';

/**
 * Refunds. Without a transaction: new credits (like a grant). Naming a debit or capture: never
 * more than is left to refund on it, given back to the grants it came from, latest-consumed first;
 * what goes back to a grant that has expired expires again in the same operation.
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
  // Give the credits back to the grants they came from, latest-consumed first, with the class and
  // expiry they had. A grant past its expiry takes its share back too, and that share leaves again
  // at once through an expiry entry (below): a refund never turns expiring credits into lasting ones.
  let left = op.amount;
  const expired: { grant: GrantState; amount: number }[] = [];
  for (const alloc of [...target.allocations].reverse()) {
    if (left === 0) break;
    const restoredAlready = target.restoredByGrant.get(alloc.grantId) ?? 0;
    const give = Math.min(alloc.amount - restoredAlready, left);
    if (give <= 0) continue;
    // The load brings every grant a named debit took from (spent ones included).
    const grant = must(b.grants.get(alloc.grantId), `grant ${alloc.grantId} of ${target.id} loaded`);
    target.restoredByGrant.set(alloc.grantId, restoredAlready + give);
    left -= give;
    grant.remaining += give;
    grant.dirty = true;
    b.account.balance += give;
    b.allocate(entryId, grant.id, give);
    if (b.pastDue(grant)) expired.push({ grant, amount: give });
    else grant.expiredAt = null;
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
  for (const { grant, amount } of expired) {
    b.take(grant, amount);
    if (grant.remaining === 0) grant.expiredAt ??= b.now;
    b.entry('expiry', -amount, `refunded credits expired (grant ${grant.id}, refund ${entryId})`, {}, { grantId: grant.id });
  }
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}
