import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { created, done } from '../idempotency/idempotency.js';
import { type HoldState, holdBody, isFinalHold, type LedgerOp, type OpResult } from './credits.js';
import type { Book } from './credits.engine.book.js';
import { expirePastDue } from './credits.engine.expiry.js';

/**
 * Holds: a reservation of available credits (`held`), captured (≤ the hold; the rest released)
 * or released once. Past due, a hold expires (credits.engine.expiry.ts).
 */
export function hold(b: Book, op: Extract<LedgerOp, { kind: 'hold' }>): OpResult {
  b.assertAvailable(op.amount);
  const h: HoldState = {
    id: newId('hold'),
    accountId: b.account.id,
    userId: b.account.userId,
    workspaceId: b.account.workspaceId,
    memberId: op.memberId ?? null,
    amount: op.amount,
    captured: null,
    status: 'held',
    expiresAt: new Date(b.now.getTime() + op.expiresInSeconds * 1000),
    transactionId: null,
    metadata: op.metadata,
    resolvedAt: null,
    createdAt: b.stamp(),
    isNew: true,
    dirty: true,
  };
  b.holds.set(h.id, h);
  b.account.held += op.amount;
  return created(holdBody(h));
}

function openHold(b: Book, holdId: string, verb: string): HoldState {
  const h = b.holds.get(holdId);
  if (!h || h.accountId !== b.account.id) throw errors.notFound('Hold', holdId);
  if (isFinalHold(h.status)) {
    throw errors.invalidState(`Cannot ${verb} a hold that is ${h.status}`, { hold_id: holdId, status: h.status });
  }
  return h;
}

export function capture(b: Book, op: Extract<LedgerOp, { kind: 'capture' }>): OpResult {
  const h = openHold(b, op.holdId, 'capture');
  const amount = op.amount ?? h.amount;
  if (amount > h.amount) {
    throw errors.invalidRequest(`Cannot capture ${amount}: the hold is for ${h.amount}`, { field: 'amount', held: h.amount });
  }
  b.account.held -= h.amount;
  h.status = 'captured';
  h.captured = amount;
  h.resolvedAt = b.now;
  h.dirty = true;
  if (amount > 0) {
    const entryId = newId('transaction');
    // Held credits may sit in a past-due grant (expiry left them for this): a capture takes those first.
    b.consume(entryId, amount, b.live());
    const reason = typeof h.metadata['reason'] === 'string' ? (h.metadata['reason'] as string) : 'hold captured';
    const entry = b.entry('capture', -amount, reason, op.metadata, { id: entryId, holdId: h.id, grantId: b.settle(entryId), memberId: h.memberId });
    h.transactionId = entry.id;
    b.account.totalSpent += amount;
  }
  expirePastDue(b);
  return done(holdBody(h));
}

export function release(b: Book, op: Extract<LedgerOp, { kind: 'release' }>): OpResult {
  const h = openHold(b, op.holdId, 'release');
  b.account.held -= h.amount;
  h.status = 'released';
  h.resolvedAt = b.now;
  h.dirty = true;
  expirePastDue(b);
  return done(holdBody(h));
}
