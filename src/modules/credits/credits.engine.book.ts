import { errors } from '../../core/errors.js';
import type { DomainEvent, EventType } from '../../core/events.js';
import { newId } from '../../lib/ids.js';
import { type AccountState, balanceBody, type GrantState, type HoldState, isDebt, type LedgerEntry, type RefundTarget, type SpenderState } from './credits.js';
import { compareGrants } from './credits.engine.order.js';

/** Money moved between grants by one entry (several grants → allocation rows; see `settle`). */
export interface Allocation {
  transactionId: string;
  grantId: string;
  amount: number;
}

/** A new grant's shape (its class, where it came from, when it ends, its place in the order). */
export interface GrantShape {
  class: string;
  source: string;
  expiresAt: Date | null;
  priority: number;
  rolloverUntil?: Date | null;
}

/**
 * One account's state in one batch and the primitives every rule moves it with: take from a
 * grant, add a grant, append an entry, allocate. The rules (credits.engine.{grants,spend,refunds,
 * holds,expiry}.ts) change the state only through these, so `balance = Σ grants.remaining` and
 * `balance_after` hold whatever rule ran. No I/O.
 */
export class Book {
  readonly account: AccountState;
  readonly grants = new Map<string, GrantState>();
  readonly holds = new Map<string, HoldState>();
  readonly targets = new Map<string, RefundTarget>();
  readonly entries: LedgerEntry[] = [];
  readonly allocations: Allocation[] = [];
  /** Pool spenders of this batch by member id (credits.engine.members.ts). */
  readonly spenders = new Map<string, SpenderState>();
  /** What this batch tells the app (docs/webhooks-out.md), written with its rows. */
  readonly events: DomainEvent[] = [];

  constructor(
    input: { account: AccountState; grants: GrantState[]; holds: HoldState[]; refundTargets: RefundTarget[]; spenders?: SpenderState[] },
    readonly now: Date,
    readonly cap: number | null,
    /** The low-balance threshold when the account names none (0: none). */
    readonly lowThresholdDefault = 0,
  ) {
    this.account = { ...input.account };
    for (const g of input.grants) this.grants.set(g.id, { ...g });
    for (const h of input.holds) this.holds.set(h.id, { ...h });
    for (const t of input.refundTargets) this.targets.set(t.id, { ...t, restoredByGrant: new Map(t.restoredByGrant) });
    for (const s of input.spenders ?? []) this.spenders.set(s.memberId, { ...s });
  }

  /**
   * A batch's rows share its instant (JavaScript dates have milliseconds only); within it, ids are
   * monotonic ULIDs, and across batches `seq` is the order of record.
   */
  stamp(): Date {
    return new Date(this.now.getTime());
  }

  /** Live grants in consumption order. */
  live(): GrantState[] {
    return [...this.grants.values()].filter((g) => g.remaining > 0).sort(compareGrants);
  }

  /** Whether a grant's expiry has come at this batch's instant (live only while it backs open holds). */
  pastDue(g: GrantState): boolean {
    return g.expiresAt !== null && g.expiresAt.getTime() <= this.now.getTime();
  }

  /**
   * Live grants an operation may spend, in consumption order: debits, usage, clawbacks. A past-due
   * grant is live only for the credits that back open holds (expiry leaves that much), so only a
   * capture takes from it; everything else is paid from grants that have not expired. Since
   * past-due credits never exceed `held`, these always cover `available`.
   */
  spendable(): GrantState[] {
    return this.live().filter((g) => !this.pastDue(g));
  }

  available(): number {
    return this.account.balance - this.account.held;
  }

  /**
   * What positive grants hold beyond what open holds reserve. Without debt this equals available;
   * with debt (a clawback's negative grant) the balance understates it, and expiry and clawbacks
   * must still never take the credits that back an open hold.
   */
  free(): number {
    let positive = 0;
    for (const g of this.grants.values()) if (g.remaining > 0) positive += g.remaining;
    return positive - this.account.held;
  }

  /** Debt grants, oldest first: new credits pay them off in that order. */
  debts(): GrantState[] {
    return [...this.grants.values()].filter(isDebt).sort(compareGrants);
  }

  assertAvailable(amount: number): void {
    const available = this.available();
    if (amount > available) {
      throw errors.insufficientCredits(`Not enough credits: ${amount} needed, ${available} available`, {
        needed: amount,
        available,
      });
    }
  }

  assertUnderCap(amount: number): void {
    if (this.cap !== null && this.account.balance + amount > this.cap) {
      throw errors.balanceCapExceeded(`The balance would exceed the cap of ${this.cap}`, {
        cap: this.cap,
        balance: this.account.balance,
        amount,
      });
    }
  }

  /**
   * Takes `amount` from `from` (by default the spendable grants) in order, recording allocations;
   * the caller checked availability. A capture passes every live grant: held credits may be past due.
   */
  consume(entryId: string, amount: number, from: GrantState[] = this.spendable()): void {
    let left = amount;
    for (const grant of from) {
      if (left === 0) break;
      const take = Math.min(grant.remaining, left);
      this.take(grant, take);
      this.allocate(entryId, grant.id, take);
      left -= take;
    }
    if (left !== 0) throw new Error(`ledger invariant broken: grants short by ${left} on ${this.account.id}`);
  }

  allocate(transactionId: string, grantId: string, amount: number): void {
    this.allocations.push({ transactionId, grantId, amount });
  }

  /**
   * An entry that took from (or gave to) exactly one grant names it in grant_id and needs no
   * allocation row: the common case writes one row, not two. Several grants → allocation rows.
   */
  settle(entryId: string): string | null {
    // This entry's allocations are the last ones pushed.
    const n = this.allocations.length;
    const last = this.allocations[n - 1];
    if (!last || last.transactionId !== entryId || this.allocations[n - 2]?.transactionId === entryId) return null;
    this.allocations.pop();
    return last.grantId;
  }

  take(grant: GrantState, amount: number): void {
    grant.remaining -= amount;
    grant.dirty = true;
    this.account.balance -= amount;
  }

  /** A new grant of `amount`, of which `remaining` (default all) is still there: the balance rises by that. */
  newGrant(amount: number, shape: GrantShape, metadata: Record<string, unknown>, remaining = amount): GrantState {
    const grant: GrantState = {
      id: newId('grant'),
      accountId: this.account.id,
      class: shape.class,
      source: shape.source,
      amount,
      remaining,
      priority: shape.priority,
      expiresAt: shape.expiresAt,
      expiredAt: null,
      rolloverUntil: shape.rolloverUntil ?? null,
      transactionId: null,
      metadata,
      createdAt: this.stamp(),
      isNew: true,
      dirty: true,
    };
    this.grants.set(grant.id, grant);
    this.account.balance += remaining;
    return grant;
  }

  /** Appends a ledger entry. The balance already moved (through grants); balance_after is it. */
  entry(
    type: LedgerEntry['type'],
    amount: number,
    reason: string,
    metadata: Record<string, unknown>,
    extra: { id?: string; grantId?: string | null; holdId?: string; refundOf?: string; memberId?: string | null },
  ): LedgerEntry {
    const entry: LedgerEntry = {
      id: extra.id ?? newId('transaction'),
      accountId: this.account.id,
      userId: this.account.userId,
      workspaceId: this.account.workspaceId,
      memberId: extra.memberId ?? null,
      type,
      amount,
      balanceAfter: this.account.balance,
      reason,
      metadata,
      grantId: extra.grantId ?? null,
      holdId: extra.holdId ?? null,
      refundOf: extra.refundOf ?? null,
      seq: ++this.account.lastSeq,
      createdAt: this.stamp(),
    };
    this.entries.push(entry);
    return entry;
  }

  /** An event about this account, written in the batch's transaction. */
  tell(type: EventType, data: Record<string, unknown>): void {
    this.events.push({ type, data, userId: this.account.userId, workspaceId: this.account.workspaceId });
  }

  /** The threshold below which this account is low (0: none). */
  lowThreshold(): number {
    return this.account.lowThreshold ?? this.lowThresholdDefault;
  }

  /**
   * After a movement that took the balance from `before` to where it is now: crossing the low
   * threshold downwards tells `credits.low`, reaching zero or less tells `credits.depleted`. Only a
   * crossing tells: further movements below stay silent until one takes the balance back up.
   */
  crossed(before: number, entriesBefore: number): void {
    const after = this.account.balance;
    if (after >= before) return;
    const a = this.account;
    const last = this.entries.length > entriesBefore ? this.entries[this.entries.length - 1] : undefined;
    const state = { user_id: a.userId, workspace_id: a.workspaceId, balance: a.balance, held: a.held, available: a.balance - a.held, transaction_id: last?.id ?? null };
    const threshold = this.lowThreshold();
    if (threshold > 0 && before >= threshold && after < threshold) this.tell('credits.low', { ...state, threshold });
    if (before > 0 && after <= 0) this.tell('credits.depleted', state);
  }

  /** The balance as answers show it. */
  balance() {
    return balanceBody(this.account, this.live());
  }
}
