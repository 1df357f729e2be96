import { done } from '../idempotency/idempotency.js';
import { type GrantState, holdBody, type LedgerOp, type OpResult } from './credits.js';
import type { Book } from './credits.engine.book.js';

/**
 * Past-due holds expire (their credits become available again); then past-due grants expire,
 * each through a visible `expiry` entry. Credits still backing an open hold are kept until the
 * hold resolves, so a capture can always be paid: expiry never takes the balance below `held`.
 * Runs at the start of every session (lazy expiry) — a sweep is a session with nothing else.
 */
export function expireDue(b: Book): void {
  const now = b.now.getTime();
  for (const h of b.holds.values()) {
    if (h.status === 'held' && h.expiresAt.getTime() <= now) {
      h.status = 'expired';
      h.resolvedAt = b.now;
      h.dirty = true;
      b.account.held -= h.amount;
      b.tell('hold.expired', holdBody(h));
    }
  }
  expirePastDue(b);
}

/**
 * Past-due grants leave as far as open holds allow. Runs at the start of a batch and again
 * whenever a hold settles inside it (capture, release): credits a settled hold no longer backs
 * expire at once, so no later operation of the batch can spend them.
 */
export function expirePastDue(b: Book): void {
  const now = b.now.getTime();
  for (const grant of b.live()) {
    if (!grant.expiresAt || grant.expiresAt.getTime() > now) continue;
    if (grant.rolloverUntil && grant.rolloverUntil.getTime() > now) {
      rollOver(b, grant, grant.rolloverUntil);
      continue;
    }
    const amount = Math.min(grant.remaining, b.free());
    if (amount <= 0) continue;
    b.take(grant, amount);
    b.entry('expiry', -amount, `credits expired (grant ${grant.id})`, {}, { grantId: grant.id });
    if (grant.remaining === 0) grant.expiredAt = b.now;
  }
}

/**
 * An expiring allowance's remainder moves, whole, into a `rollover` grant of the same class that
 * expires at `until` and never rolls again (one cycle, not two). Two visible entries, net zero:
 * `expiry` out of the old grant, `rollover` into the new one. Not new credit: total_credited stays.
 */
function rollOver(b: Book, grant: GrantState, until: Date): void {
  const amount = grant.remaining;
  b.take(grant, amount);
  grant.expiredAt = b.now;
  b.entry('expiry', -amount, `allowance ended (grant ${grant.id}); remainder rolls over`, {}, { grantId: grant.id });
  const bucket = b.newGrant(
    amount,
    { class: grant.class, source: 'rollover', expiresAt: until, priority: grant.priority },
    { rolled_over_from: grant.id, ...pick(grant.metadata, ['subscription_id']) },
  );
  const entry = b.entry('rollover', amount, `rolled over from grant ${grant.id}`, {}, { grantId: bucket.id });
  bucket.transactionId = entry.id;
}

/** Ends the named live grants now; like lazy expiry, never below what open holds need. */
export function expireNamed(b: Book, op: Extract<LedgerOp, { kind: 'expire' }>): OpResult {
  let expired = 0;
  for (const id of op.grantIds) {
    const grant = b.grants.get(id);
    if (!grant || grant.remaining === 0 || grant.accountId !== b.account.id) continue;
    const amount = Math.min(grant.remaining, Math.max(b.available(), 0));
    if (amount <= 0) continue;
    b.take(grant, amount);
    if (grant.remaining === 0) grant.expiredAt = b.now;
    grant.rolloverUntil = null;
    b.entry('expiry', -amount, op.reason, {}, { grantId: grant.id });
    expired += amount;
  }
  return done({ expired });
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
}
