import { errors, isRefusal } from '../../core/errors.js';
import { created, done, refused } from '../idempotency/idempotency.js';
import { newId } from '../../lib/ids.js';
import {
  type AccountState,
  balanceBody,
  DEBT_SOURCE,
  isDebt,
  type GrantState,
  type HoldState,
  holdBody,
  isFinalHold,
  type LedgerEntry,
  type LedgerOp,
  type OpResult,
  type RefundTarget,
  transactionBody,
  type ConsumeTier,
} from './credits.js';
import { must } from '../../lib/must.js';

/**
 * The ledger's rules, as pure computation over one account's state. A batch of operations is
 * applied in order to the in-memory state (already locked and loaded by the repository); the
 * result is one answer per operation plus the rows to write. No I/O here, so every rule is unit-
 * testable and the SQL stays set-based (a whole batch is written with a handful of statements).
 */
export interface EngineInput {
  account: AccountState;
  /** Live grants (remaining > 0) plus any grant a refund in this batch may restore into. */
  grants: GrantState[];
  /** Holds this batch touches, plus open holds that are past due. */
  holds: HoldState[];
  /** Debits/captures that refunds in this batch name, with what was already refunded. */
  refundTargets: RefundTarget[];
  now: Date;
  balanceCap: number | null;
}

export interface EngineOutput {
  results: OpResult[];
  account: AccountState;
  entries: LedgerEntry[];
  allocations: { transactionId: string; grantId: string; amount: number }[];
  /** Grants to insert (isNew) or update (dirty). */
  grants: GrantState[];
  /** Holds to insert (isNew) or update (dirty). */
  holds: HoldState[];
}

/** Consumption order: soonest expiry, then priority (lower first), then oldest. */
export function compareGrants(a: GrantState, b: GrantState): number {
  const ea = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  const eb = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  if (ea !== eb) return ea < eb ? -1 : 1;
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ca = a.createdAt.getTime();
  const cb = b.createdAt.getTime();
  if (ca !== cb) return ca - cb;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function applyOps(input: EngineInput, ops: LedgerOp[]): EngineOutput {
  const state = new LedgerSession(input);
  const results = ops.map((op) => state.run(op));
  return state.output(results);
}

/** What a `consume` gave: the entry (null when nothing was taken) and the amount per tier. */
export interface ConsumeResult {
  transactionId: string | null;
  taken: number;
  byTier: { name: string; amount: number }[];
  balanceAfter: number;
}

/**
 * One account's state in one batch, changed op by op. Billing keeps a session open while it
 * prices a batch of usage events, reading `available()` between operations.
 */
export class LedgerSession {
  private readonly account: AccountState;
  private readonly grants = new Map<string, GrantState>();
  private readonly holds = new Map<string, HoldState>();
  private readonly targets = new Map<string, RefundTarget>();
  private readonly entries: LedgerEntry[] = [];
  private readonly allocations: EngineOutput['allocations'] = [];
  private readonly now: Date;
  private readonly cap: number | null;

  /** The last `consume` answered (billing reads it after `run`). */
  lastConsume: ConsumeResult | null = null;

  constructor(input: EngineInput) {
    this.account = { ...input.account };
    for (const g of input.grants) this.grants.set(g.id, { ...g });
    for (const h of input.holds) this.holds.set(h.id, { ...h });
    for (const t of input.refundTargets) this.targets.set(t.id, { ...t, restoredByGrant: new Map(t.restoredByGrant) });
    this.now = input.now;
    this.cap = input.balanceCap;
    this.expireDue();
  }

  /** Applies one operation; a refusal (4xx) is an answer and changes nothing. */
  run(op: LedgerOp): OpResult {
    try {
      return this.apply(op);
    } catch (err) {
      if (isRefusal(err)) return refused(err, op.requestId);
      throw err;
    }
  }

  get accountState(): Readonly<AccountState> {
    return this.account;
  }

  /**
   * A batch's rows share its instant (JavaScript dates have milliseconds only); within it, ids are
   * monotonic ULIDs, and across batches `seq` is the order of record.
   */
  private stamp(): Date {
    return new Date(this.now.getTime());
  }

  /** Live grants in consumption order. */
  private live(): GrantState[] {
    return [...this.grants.values()].filter((g) => g.remaining > 0).sort(compareGrants);
  }

  available(): number {
    return this.account.balance - this.account.held;
  }

  /** What a `consume` over these tiers could take now, per tier (nothing changes). */
  coverable(tiers: ConsumeTier[], want = Number.POSITIVE_INFINITY): { name: string; amount: number }[] {
    let left = Math.min(Math.max(this.available(), 0), want);
    return tiers.map((tier) => {
      const inTier = this.live()
        .filter((g) => inConsumeTier(g, tier, tiers))
        .reduce((s, g) => s + g.remaining, 0);
      const amount = Math.min(inTier, left);
      left -= amount;
      return { name: tier.name, amount };
    });
  }

  /**
   * What positive grants hold beyond what open holds reserve. Without debt this equals available;
   * with debt (a clawback's negative grant) the balance understates it, and expiry and clawbacks
   * must still never take the credits that back an open hold.
   */
  private free(): number {
    let positive = 0;
    for (const g of this.grants.values()) if (g.remaining > 0) positive += g.remaining;
    return positive - this.account.held;
  }

  /** Debt grants, oldest first: new credits pay them off in that order. */
  private debts(): GrantState[] {
    return [...this.grants.values()].filter(isDebt).sort(compareGrants);
  }

  /**
   * Past-due holds expire (their credits become available again); then past-due grants expire,
   * each through a visible `expiry` entry. Credits still backing an open hold are kept until the
   * hold resolves, so a capture can always be paid: expiry never takes the balance below `held`.
   */
  expireDue(): void {
    for (const hold of this.holds.values()) {
      if (hold.status === 'held' && hold.expiresAt.getTime() <= this.now.getTime()) {
        hold.status = 'expired';
        hold.resolvedAt = this.now;
        hold.dirty = true;
        this.account.held -= hold.amount;
      }
    }
    for (const grant of this.live()) {
      if (!grant.expiresAt || grant.expiresAt.getTime() > this.now.getTime()) continue;
      if (grant.rolloverUntil && grant.rolloverUntil.getTime() > this.now.getTime()) {
        this.rollOver(grant, grant.rolloverUntil);
        continue;
      }
      const amount = Math.min(grant.remaining, this.free());
      if (amount <= 0) continue;
      this.take(grant, amount);
      this.entry('expiry', -amount, `credits expired (grant ${grant.id})`, {}, { grantId: grant.id });
      if (grant.remaining === 0) grant.expiredAt = this.now;
    }
  }

  /**
   * An expiring allowance's remainder moves, whole, into a `rollover` grant of the same class that
   * expires at `until` and never rolls again (one cycle, not two). Two visible entries, net zero:
   * `expiry` out of the old grant, `rollover` into the new one. Not new credit: total_credited stays.
   */
  private rollOver(grant: GrantState, until: Date): void {
    const amount = grant.remaining;
    this.take(grant, amount);
    grant.expiredAt = this.now;
    this.entry('expiry', -amount, `allowance ended (grant ${grant.id}); remainder rolls over`, {}, { grantId: grant.id });
    const bucket = this.newGrant(
      amount,
      { class: grant.class, source: 'rollover', expiresAt: until, priority: grant.priority },
      { rolled_over_from: grant.id, ...pick(grant.metadata, ['subscription_id']) },
    );
    const entry = this.entry('rollover', amount, `rolled over from grant ${grant.id}`, {}, { grantId: bucket.id });
    bucket.transactionId = entry.id;
  }

  private apply(op: LedgerOp): OpResult {
    switch (op.kind) {
      case 'grant':
        return this.grant(op);
      case 'debit':
        return this.spend('debit', op.amount, op.reason, op.metadata);
      case 'consume':
        return this.consumeTiers(op);
      case 'expire':
        return this.expireNamed(op);
      case 'adjust':
        return op.amount > 0
          ? this.credit('adjustment', op.amount, op.reason, op.metadata)
          : this.spend('adjustment', -op.amount, op.reason, op.metadata);
      case 'refund':
        return this.refund(op);
      case 'hold':
        return this.hold(op);
      case 'capture':
        return this.capture(op);
      case 'release':
        return this.release(op);
      case 'sweep':
        return done(null);
      case 'clawback':
        return this.clawback(op);
    }
  }

  private grant(op: Extract<LedgerOp, { kind: 'grant' }>): OpResult {
    if (op.expiresAt && op.expiresAt.getTime() <= this.now.getTime()) {
      throw errors.invalidRequest('expires_at must be in the future', { field: 'expires_at' });
    }
    return this.credit('grant', op.amount, op.reason, op.metadata, {
      class: op.class,
      source: op.source,
      expiresAt: op.expiresAt,
      priority: op.priority,
      rolloverUntil: op.rolloverUntil ?? null,
    });
  }

  /** Ends the named live grants now; like lazy expiry, never below what open holds need. */
  private expireNamed(op: Extract<LedgerOp, { kind: 'expire' }>): OpResult {
    let expired = 0;
    for (const id of op.grantIds) {
      const grant = this.grants.get(id);
      if (!grant || grant.remaining === 0 || grant.accountId !== this.account.id) continue;
      const amount = Math.min(grant.remaining, Math.max(this.available(), 0));
      if (amount <= 0) continue;
      this.take(grant, amount);
      if (grant.remaining === 0) grant.expiredAt = this.now;
      grant.rolloverUntil = null;
      this.entry('expiry', -amount, op.reason, {}, { grantId: grant.id });
      expired += amount;
    }
    return done({ expired });
  }

  /** Usage: tier by tier, up to what is available; one `debit` entry for all of it. */
  private consumeTiers(op: Extract<LedgerOp, { kind: 'consume' }>): OpResult {
    const plan = this.coverable(op.tiers, op.amount);
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
        for (const grant of this.live().filter((g) => inConsumeTier(g, tier, op.tiers))) {
          if (left === 0) break;
          const take = Math.min(grant.remaining, left);
          this.take(grant, take);
          this.allocations.push({ transactionId: entryId, grantId: grant.id, amount: take });
          left -= take;
        }
      }
      this.entry('debit', -taken, op.reason, op.metadata, { id: entryId, grantId: this.settle(entryId) });
      this.account.totalSpent += taken;
      transactionId = entryId;
    }
    this.lastConsume = { transactionId, taken, byTier: plan, balanceAfter: this.account.balance };
    return created({ transaction_id: transactionId, taken, balance: this.balance() });
  }

  /** Adds credits as a new grant: grants, positive adjustments, refunds not tied to a debit. */
  private credit(
    type: 'grant' | 'adjustment' | 'refund',
    amount: number,
    reason: string,
    metadata: Record<string, unknown>,
    shape: { class: string; source: string; expiresAt: Date | null; priority: number; rolloverUntil?: Date | null } = {
      class: 'default',
      source: type,
      expiresAt: null,
      priority: 0,
    },
  ): OpResult {
    this.assertUnderCap(amount);
    if (this.debts().length > 0) return this.creditOverDebt(type, amount, reason, metadata, shape);
    const grant = this.newGrant(amount, shape, metadata);
    const entry = this.entry(type, amount, reason, metadata, { grantId: grant.id });
    grant.transactionId = entry.id;
    if (type === 'refund') this.account.totalSpent -= amount;
    else this.account.totalCredited += amount;
    return created({ transaction: transactionBody(entry), balance: this.balance() });
  }

  /**
   * New credits on an account in debt pay the debt off first (oldest debt grant first); only the
   * rest becomes a new grant. The entry is allocated to the debt grants it repaid and to the new
   * grant, so `balance = Σ grants.remaining` holds throughout.
   */
  private creditOverDebt(
    type: 'grant' | 'adjustment' | 'refund',
    amount: number,
    reason: string,
    metadata: Record<string, unknown>,
    shape: { class: string; source: string; expiresAt: Date | null; priority: number },
  ): OpResult {
    const entryId = newId('transaction');
    let left = amount;
    for (const debt of this.debts()) {
      if (left === 0) break;
      const pay = Math.min(left, -debt.remaining);
      debt.remaining += pay;
      debt.dirty = true;
      this.account.balance += pay;
      this.allocations.push({ transactionId: entryId, grantId: debt.id, amount: pay });
      left -= pay;
    }
    if (left > 0) {
      const grant = this.newGrant(left, shape, metadata);
      grant.transactionId = entryId;
      this.allocations.push({ transactionId: entryId, grantId: grant.id, amount: left });
    }
    const entry = this.entry(type, amount, reason, metadata, { id: entryId, grantId: this.settle(entryId) });
    if (type === 'refund') this.account.totalSpent -= amount;
    else this.account.totalCredited += amount;
    return created({ transaction: transactionBody(entry), balance: this.balance() });
  }

  /**
   * Takes back what a payment granted: first from the payment's own grant, then from other
   * grants in consumption order — but never the credits backing open holds (a capture must stay
   * payable). Whatever is left becomes a new `debt` grant with negative remaining: the balance
   * goes below zero, available with it, and spending is refused until grants repay it. Neither
   * spent nor credited in the lifetime totals (like expiry).
   */
  private clawback(op: Extract<LedgerOp, { kind: 'clawback' }>): OpResult {
    const entryId = newId('transaction');
    let left = op.amount;
    let free = Math.max(0, this.free());
    const live = this.live();
    const own = op.transactionId ? live.find((g) => g.transactionId === op.transactionId && g.source !== DEBT_SOURCE) : undefined;
    for (const grant of own ? [own, ...live.filter((g) => g !== own)] : live) {
      if (left === 0 || free === 0) break;
      const take = Math.min(grant.remaining, left, free);
      this.take(grant, take);
      this.allocations.push({ transactionId: entryId, grantId: grant.id, amount: take });
      left -= take;
      free -= take;
    }
    if (left > 0) {
      const debt = this.newGrant(left, { class: 'default', source: DEBT_SOURCE, expiresAt: null, priority: 0 }, op.metadata);
      // newGrant added `left`; a debt grant owes it instead: remaining -left, balance down by left.
      debt.remaining = -left;
      debt.transactionId = entryId;
      this.account.balance -= 2 * left;
      this.allocations.push({ transactionId: entryId, grantId: debt.id, amount: left });
    }
    const entry = this.entry('clawback', -op.amount, op.reason, op.metadata, { id: entryId, grantId: this.settle(entryId) });
    return created({ transaction: transactionBody(entry), balance: this.balance() });
  }

  /** Takes credits out in consumption order: debits and negative adjustments. */
  private spend(
    type: 'debit' | 'adjustment',
    amount: number,
    reason: string,
    metadata: Record<string, unknown>,
  ): OpResult {
    this.assertAvailable(amount);
    const entryId = newId('transaction');
    this.consume(entryId, amount);
    const entry = this.entry(type, -amount, reason, metadata, { id: entryId, grantId: this.settle(entryId) });
    if (type === 'debit') this.account.totalSpent += amount;
    return created({ transaction: transactionBody(entry), balance: this.balance() });
  }

  private refund(op: Extract<LedgerOp, { kind: 'refund' }>): OpResult {
    if (!op.transactionId) {
      return this.credit('refund', op.amount, op.reason, op.metadata, {
        class: 'default',
        source: 'refund',
        expiresAt: null,
        priority: 0,
      });
    }
    const target = this.targets.get(op.transactionId);
    if (!target || target.accountId !== this.account.id) throw errors.notFound('Transaction', op.transactionId);
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
      const grant = this.grants.get(alloc.grantId);
      target.restoredByGrant.set(alloc.grantId, restoredAlready + give);
      left -= give;
      if (grant && (!grant.expiresAt || grant.expiresAt.getTime() > this.now.getTime())) {
        grant.remaining += give;
        grant.expiredAt = null;
        grant.dirty = true;
        this.account.balance += give;
        this.allocations.push({ transactionId: entryId, grantId: grant.id, amount: give });
      } else {
        const fresh = this.newGrant(give, { class: grant?.class ?? 'default', source: 'refund', expiresAt: null, priority: 0 }, {});
        fresh.transactionId = entryId;
        this.allocations.push({ transactionId: entryId, grantId: fresh.id, amount: give });
      }
    }
    if (left > 0) {
      // Older debits without allocation records: a plain refund grant for the rest.
      const fresh = this.newGrant(left, { class: 'default', source: 'refund', expiresAt: null, priority: 0 }, {});
      fresh.transactionId = entryId;
      this.allocations.push({ transactionId: entryId, grantId: fresh.id, amount: left });
    }
    target.refunded += op.amount;
    this.account.totalSpent -= op.amount;
    const entry = this.entry('refund', op.amount, op.reason, op.metadata, { id: entryId, refundOf: target.id, grantId: this.settle(entryId) });
    return created({ transaction: transactionBody(entry), balance: this.balance() });
  }

  private hold(op: Extract<LedgerOp, { kind: 'hold' }>): OpResult {
    this.assertAvailable(op.amount);
    const hold: HoldState = {
      id: newId('hold'),
      accountId: this.account.id,
      userId: this.account.userId,
      workspaceId: this.account.workspaceId,
      amount: op.amount,
      captured: null,
      status: 'held',
      expiresAt: new Date(this.now.getTime() + op.expiresInSeconds * 1000),
      transactionId: null,
      metadata: op.metadata,
      resolvedAt: null,
      createdAt: this.stamp(),
      isNew: true,
      dirty: true,
    };
    this.holds.set(hold.id, hold);
    this.account.held += op.amount;
    return created(holdBody(hold));
  }

  private openHold(holdId: string, verb: string): HoldState {
    const hold = this.holds.get(holdId);
    if (!hold || hold.accountId !== this.account.id) throw errors.notFound('Hold', holdId);
    if (isFinalHold(hold.status)) {
      throw errors.invalidState(`Cannot ${verb} a hold that is ${hold.status}`, { hold_id: holdId, status: hold.status });
    }
    return hold;
  }

  private capture(op: Extract<LedgerOp, { kind: 'capture' }>): OpResult {
    const hold = this.openHold(op.holdId, 'capture');
    const amount = op.amount ?? hold.amount;
    if (amount > hold.amount) {
      throw errors.invalidRequest(`Cannot capture ${amount}: the hold is for ${hold.amount}`, { field: 'amount', held: hold.amount });
    }
    this.account.held -= hold.amount;
    hold.status = 'captured';
    hold.captured = amount;
    hold.resolvedAt = this.now;
    hold.dirty = true;
    if (amount > 0) {
      const entryId = newId('transaction');
      this.consume(entryId, amount);
      const reason = typeof hold.metadata['reason'] === 'string' ? (hold.metadata['reason'] as string) : 'hold captured';
      const entry = this.entry('capture', -amount, reason, op.metadata, { id: entryId, holdId: hold.id, grantId: this.settle(entryId) });
      hold.transactionId = entry.id;
      this.account.totalSpent += amount;
    }
    return done(holdBody(hold));
  }

  private release(op: Extract<LedgerOp, { kind: 'release' }>): OpResult {
    const hold = this.openHold(op.holdId, 'release');
    this.account.held -= hold.amount;
    hold.status = 'released';
    hold.resolvedAt = this.now;
    hold.dirty = true;
    return done(holdBody(hold));
  }

  private assertAvailable(amount: number): void {
    const available = this.available();
    if (amount > available) {
      throw errors.insufficientCredits(`Not enough credits: ${amount} needed, ${available} available`, {
        needed: amount,
        available,
      });
    }
  }

  private assertUnderCap(amount: number): void {
    if (this.cap !== null && this.account.balance + amount > this.cap) {
      throw errors.balanceCapExceeded(`The balance would exceed the cap of ${this.cap}`, {
        cap: this.cap,
        balance: this.account.balance,
        amount,
      });
    }
  }

  /** Takes `amount` from live grants in order, recording allocations; the caller checked availability. */
  private consume(entryId: string, amount: number): void {
    let left = amount;
    for (const grant of this.live()) {
      if (left === 0) break;
      const take = Math.min(grant.remaining, left);
      this.take(grant, take);
      this.allocations.push({ transactionId: entryId, grantId: grant.id, amount: take });
      left -= take;
    }
    if (left !== 0) throw new Error(`ledger invariant broken: grants short by ${left} on ${this.account.id}`);
  }

  /**
   * An entry that took from (or gave to) exactly one grant names it in grant_id and needs no
   * allocation row: the common case writes one row, not two. Several grants → allocation rows.
   */
  private settle(entryId: string): string | null {
    // This entry's allocations are the last ones pushed.
    const n = this.allocations.length;
    const last = this.allocations[n - 1];
    if (!last || last.transactionId !== entryId || this.allocations[n - 2]?.transactionId === entryId) return null;
    this.allocations.pop();
    return last.grantId;
  }

  private take(grant: GrantState, amount: number): void {
    grant.remaining -= amount;
    grant.dirty = true;
    this.account.balance -= amount;
  }

  private newGrant(
    amount: number,
    shape: { class: string; source: string; expiresAt: Date | null; priority: number; rolloverUntil?: Date | null },
    metadata: Record<string, unknown>,
  ): GrantState {
    const grant: GrantState = {
      id: newId('grant'),
      accountId: this.account.id,
      class: shape.class,
      source: shape.source,
      amount,
      remaining: amount,
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
    this.account.balance += amount;
    return grant;
  }

  /** Appends a ledger entry. The balance already moved (through grants); balance_after is it. */
  private entry(
    type: LedgerEntry['type'],
    amount: number,
    reason: string,
    metadata: Record<string, unknown>,
    extra: { id?: string; grantId?: string | null; holdId?: string; refundOf?: string },
  ): LedgerEntry {
    const entry: LedgerEntry = {
      id: extra.id ?? newId('transaction'),
      accountId: this.account.id,
      userId: this.account.userId,
      workspaceId: this.account.workspaceId,
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

  private balance() {
    return balanceBody(this.account, this.live());
  }

  /**
   * The state this session leaves, as a later batch would load it: live (and debt) grants, open
   * holds, the account. A chained batch starts from it instead of reading it again (docs/ledger.md).
   */
  carried(): { account: AccountState; grants: GrantState[]; holds: HoldState[] } {
    return {
      account: { ...this.account },
      grants: [...this.grants.values()].filter((g) => g.remaining !== 0).map((g) => ({ ...g, isNew: false, dirty: false })),
      holds: [...this.holds.values()].filter((h) => h.status === 'held').map((h) => ({ ...h, isNew: false, dirty: false })),
    };
  }

  output(results: OpResult[]): EngineOutput {
    return {
      results,
      account: this.account,
      entries: this.entries,
      allocations: this.allocations,
      grants: [...this.grants.values()].filter((g) => g.dirty),
      holds: [...this.holds.values()].filter((h) => h.dirty),
    };
  }
}

/**
 * Whether a grant belongs to a tier. `other` is every grant whose source no named tier lists: an
 * allowance of another class (a hybrid plan's separate pool) is in no tier, so it is never taken.
 */
export function inConsumeTier(g: GrantState, tier: ConsumeTier, tiers: ConsumeTier[]): boolean {
  if (tier.sources === 'other') {
    return !tiers.some((t) => t.sources !== 'other' && t.sources.includes(g.source));
  }
  return tier.sources.includes(g.source) && (tier.classes === null || tier.classes.includes(g.class));
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
}
