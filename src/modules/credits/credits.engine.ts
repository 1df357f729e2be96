import { isRefusal } from '../../core/errors.js';
import type { DomainEvent } from '../../core/events.js';
import { done, refused } from '../idempotency/idempotency.js';
import { type AccountState, type ConsumeTier, type GrantState, type HoldState, isFinalHold, type LedgerEntry, type LedgerOp, type OpResult, type RefundTarget, type SpenderState } from './credits.js';
import { Book } from './credits.engine.book.js';
import { expireDue, expireNamed } from './credits.engine.expiry.js';
import { credit, grant } from './credits.engine.grants.js';
import { capture, hold, release } from './credits.engine.holds.js';
import { coverableOf } from './credits.engine.order.js';
import { assertMaySpend, countSpend, memberOf } from './credits.engine.members.js';
import { open } from './credits.engine.opening.js';
import { refund } from './credits.engine.refunds.js';
import { clawback, type ConsumeResult, consumeTiers, spend } from './credits.engine.spend.js';

export { compareGrants, inConsumeTier } from './credits.engine.order.js';
export type { ConsumeResult };

/**
 * The ledger's rules, as pure computation over one account's state. A batch of operations is
 * applied in order to the in-memory state (already locked and loaded by the repository); the
 * result is one answer per operation plus the rows to write. No I/O here, so every rule is unit-
 * testable and the SQL stays set-based (a whole batch is written with a handful of statements).
 *
 * One file per rule: the order credits are taken in (credits.engine.order.ts), grants and debt
 * (.grants.ts), spending — debits, usage tiers, clawbacks (.spend.ts), refunds (.refunds.ts), holds
 * (.holds.ts), expiry and rollover (.expiry.ts), all over one account's book (.book.ts).
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
  /** Pool members this batch spends for: role, cap and what it counts (loaded under the lock). */
  spenders?: SpenderState[];
  /** The low-balance threshold of accounts that name none (0 or absent: none). */
  lowThreshold?: number;
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
  /** Events the batch tells (credits.granted, credits.low, credits.depleted, hold.expired). */
  events: DomainEvent[];
}

export function applyOps(input: EngineInput, ops: LedgerOp[]): EngineOutput {
  const state = new LedgerSession(input);
  const results = ops.map((op) => state.run(op));
  return state.output(results);
}

/**
 * One account's state in one batch, changed op by op. Billing keeps a session open while it
 * prices a batch of usage events (through the ledger's port), reading what is coverable between
 * operations.
 */
export class LedgerSession {
  private readonly book: Book;

  /** The last `consume` answered (read after `run`). */
  lastConsume: ConsumeResult | null = null;

  constructor(input: EngineInput) {
    this.book = new Book(input, input.now, input.balanceCap, input.lowThreshold ?? 0);
    const before = this.book.account.balance;
    expireDue(this.book);
    this.book.crossed(before, 0);
  }

  /** Applies one operation; a refusal (4xx) is an answer and changes nothing. */
  run(op: LedgerOp): OpResult {
    const before = this.book.account.balance;
    const entries = this.book.entries.length;
    try {
      const memberId = memberOf(op);
      if (memberId === null) {
        const result = this.apply(op);
        this.book.crossed(before, entries);
        return result;
      }
      // A pool member's spend: role and cap first (the amount is what it takes or reserves).
      const amount = (op as { amount: number }).amount;
      const spender = assertMaySpend(this.book, memberId, amount);
      const result = this.apply(op);
      if (result.ok) countSpend(spender, amount);
      this.book.crossed(before, entries);
      return result;
    } catch (err) {
      if (isRefusal(err)) return refused(err, op.requestId);
      throw err;
    }
  }

  get accountState(): Readonly<AccountState> {
    return this.book.account;
  }

  available(): number {
    return this.book.available();
  }

  /** Refuses (throws) unless this pool member may spend `amount` now (role, cap). */
  assertMaySpend(memberId: string, amount: number): void {
    assertMaySpend(this.book, memberId, amount);
  }

  /** What an open hold of this account reserves; null when it is not open (settled, expired) or not this account's. */
  openHold(holdId: string): number | null {
    const h = this.book.holds.get(holdId);
    return h !== undefined && h.accountId === this.book.account.id && !isFinalHold(h.status) ? h.amount : null;
  }

  /** What a `consume` over these tiers could take now, per tier (nothing changes). */
  coverable(tiers: ConsumeTier[], want = Number.POSITIVE_INFINITY): { name: string; amount: number }[] {
    return coverableOf(this.book.spendable(), this.book.available(), tiers, want);
  }

  private apply(op: LedgerOp): OpResult {
    const b = this.book;
    switch (op.kind) {
      case 'grant':
        return grant(b, op);
      case 'debit':
        return spend(b, 'debit', op.amount, op.reason, op.metadata, op.memberId ?? null);
      case 'consume': {
        const { outcome, consumed } = consumeTiers(b, op);
        this.lastConsume = consumed;
        return outcome;
      }
      case 'expire':
        return expireNamed(b, op);
      case 'adjust':
        return op.amount > 0 ? credit(b, 'adjustment', op.amount, op.reason, op.metadata) : spend(b, 'adjustment', -op.amount, op.reason, op.metadata);
      case 'refund':
        return refund(b, op);
      case 'hold':
        return hold(b, op);
      case 'capture':
        return capture(b, op);
      case 'release':
        return release(b, op);
      case 'sweep':
        return done(null);
      case 'clawback':
        return clawback(b, op);
      case 'open':
        return open(b, op);
    }
  }

  /**
   * The state this session leaves, as a later batch would load it: live (and debt) grants, open
   * holds, the account. A chained batch starts from it instead of reading it again (docs/ledger.md).
   */
  carried(): { account: AccountState; grants: GrantState[]; holds: HoldState[] } {
    const b = this.book;
    return {
      account: { ...b.account },
      grants: [...b.grants.values()].filter((g) => g.remaining !== 0).map((g) => ({ ...g, isNew: false, dirty: false })),
      holds: [...b.holds.values()].filter((h) => h.status === 'held').map((h) => ({ ...h, isNew: false, dirty: false })),
    };
  }

  output(results: OpResult[]): EngineOutput {
    const b = this.book;
    return {
      results,
      account: b.account,
      entries: b.entries,
      allocations: b.allocations,
      grants: [...b.grants.values()].filter((g) => g.dirty),
      holds: [...b.holds.values()].filter((h) => h.dirty),
      events: b.events,
    };
  }
}
