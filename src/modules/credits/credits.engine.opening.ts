import { errors } from '../../core/errors.js';
import { type LedgerOp, type OpResult, transactionBody } from './credits.js';
import type { Book } from './credits.engine.book.js';
import { clawback } from './credits.engine.spend.js';
import { created } from '../idempotency/idempotency.js';
import { newId } from '../../lib/ids.js';

/** The grant source (and credit class) an opening balance lands in. */
export const OPENING_SOURCE = 'import';

/**
 * An opening balance (`tally import`, docs/import.md): the first entry of an account whose credits
 * already existed elsewhere, equal to the source's balance to the credit.
 *
 * - Positive: one `grant` entry into one grant of source `import`, never expiring. It is exempt from
 *   the balance cap: the cap limits new credits, and these are not new — refusing them would lose
 *   them, and the import must match the source exactly (the report names accounts above the cap).
 * - Negative (the source let the balance go below zero): a `clawback` entry that leaves a `debt`
 *   grant, exactly as a refunded payment does, so new credits pay it first and nothing is spendable
 *   until then (docs/ledger.md, invariant 10 holds: the debt equals the clawback).
 * - Only as the account's first entry: an account with history already has a balance of its own,
 *   which an opening would not equal (409).
 */
export function open(b: Book, op: Extract<LedgerOp, { kind: 'open' }>): OpResult {
  if (b.account.lastSeq !== 0 || b.entries.length > 0) {
    throw errors.conflict(`Account ${b.account.id} already has ledger entries: an opening balance must be its first`, { account_id: b.account.id });
  }
  if (!Number.isSafeInteger(op.amount) || op.amount === 0) throw errors.invalidRequest('An opening balance is a non-zero integer', { field: 'amount' });
  if (op.amount < 0) {
    return clawback(b, { kind: 'clawback', requestId: op.requestId, idem: op.idem, amount: -op.amount, reason: op.reason, transactionId: null, metadata: op.metadata });
  }
  const buckets = op.buckets ?? [{ amount: op.amount, class: 'default', expiresAt: null, metadata: {} }];
  if (buckets.some((k) => !Number.isSafeInteger(k.amount) || k.amount <= 0) || buckets.reduce((a, k) => a + k.amount, 0) !== op.amount) {
    throw errors.invalidRequest('An opening balance\'s buckets are positive and add up to it', { field: 'buckets' });
  }
  if (buckets.some((k) => k.expiresAt !== null && k.expiresAt.getTime() <= b.now.getTime())) {
    throw errors.invalidRequest('An opening bucket that has expired is not credits any more', { field: 'buckets' });
  }
  // One entry; one grant per bucket (class and expiry kept), the entry allocated across them.
  const entryId = newId('transaction');
  const grants = buckets.map((k) => b.newGrant(k.amount, { class: k.class, source: OPENING_SOURCE, expiresAt: k.expiresAt, priority: 0 }, { ...op.metadata, ...k.metadata }));
  for (const g of grants) {
    g.transactionId = entryId;
    b.allocate(entryId, g.id, g.amount);
  }
  const entry = b.entry('grant', op.amount, op.reason, op.metadata, { id: entryId, grantId: b.settle(entryId) });
  b.account.totalCredited += op.amount;
  return created({ transaction: transactionBody(entry), balance: b.balance() });
}
