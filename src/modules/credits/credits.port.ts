import type { Executor } from '../../db/database.js';
import type { RunStatement } from '../../db/statements.js';
import type { ConsumeResult } from './credits.engine.js';
import type { AccountState, ConsumeTier, GrantState, HoldState, LedgerOp, OpResult, Owner } from './credits.js';
export type { OpeningBucket } from './credits.js';

/**
 * The ledger as other modules see it: the one door to credits' money (docs/ledger.md, "The port").
 * Usage, payments, jobs and billing's cycles — and next the gateway — call this and nothing else of
 * credits (test/layers.test.ts): every movement goes through credits' engine, its row locks and its
 * writes, so the rules (consumption order, holds, the cap, expiry, idempotency) live in one place.
 */
export interface Ledger {
  /** Queues one operation on an owner's account; resolves with its outcome once committed. */
  execute(owner: Owner, op: LedgerOp): Promise<OpResult>;

  /** Capture and release name a hold, not an owner: the same, on the hold's account. */
  executeOnHold(holdId: string, op: LedgerOp, expectedAccount?: string | null): Promise<OpResult>;

  /**
   * Operations inside the caller's transaction (a job's hold with the job row, a payment's grant
   * with the payment), committed with it or not at all. Takes the account's row lock.
   */
  executeIn(trx: Executor, owner: Owner, ops: LedgerOp[]): Promise<OpResult[]>;

  /**
   * Opens an owner's account if it has none, in the caller's transaction, with no sign-up bonus:
   * `tally import` opens imported users' accounts this way and then writes each one's opening
   * balance (an `open` operation through `executeIn`), so the account equals the source exactly.
   */
  openAccount(trx: Executor, owner: Owner): Promise<void>;

  /**
   * Many owners' operations in one ledger batch inside the caller's transaction: the accounts are
   * locked together (id order) and written together, a few round trips however many accounts
   * (`tally import` opens a batch of users' balances this way). Answers in the order given.
   */
  executeManyIn(trx: Executor, items: readonly { owner: Owner; op: LedgerOp }[]): Promise<OpResult[]>;

  /** `openAccount` for many owners in one statement. */
  openAccounts(trx: Executor, owners: readonly Owner[]): Promise<void>;

  /**
   * Priced consumption (usage): inside the caller's transaction `run`, locks the payers' accounts
   * (id order, as every ledger batch does; a workspace pool opens on first use), loads them, and
   * hands `work` one account per account id (`accountIdOf(owner)`) that exists, with the instant
   * the locks were granted. A payer naming a `memberId` spends a pool for that member: their role,
   * spend cap and spend are loaded under the same lock (`assertMaySpend`, `consume({memberId})`).
   * What `work` consumed is written when it returns, in the same transaction. Consumption is never
   * capped by the balance cap (the cap is for grants).
   */
  consumeIn<T>(run: RunStatement, payers: readonly Payer[], work: (accounts: ReadonlyMap<string, ConsumingAccount>, now: Date) => T | Promise<T>): Promise<T>;

  /**
   * A user's ledger state for a quote (POST /v1/check), read by the caller's own statement in one
   * round trip: `columns` is the select list (`account`, `grants`, `holds`: the account, its live
   * grants, and its open holds due by `$dueBy`), `snapshotOf` reads the row back (null: no account).
   */
  readonly snapshots: {
    columns(accountParam: string, dueByParam: string): string;
    snapshotOf(row: { account: unknown; grants: unknown; holds: unknown }): LedgerSnapshot | null;
  };

  /** An account over a snapshot at `now`, to price against: what it consumes is never written. */
  quote(snapshot: LedgerSnapshot, now: Date): ConsumingAccount;

  /**
   * Ends named grants at `at` (billing: a canceled or changed plan's allowances) and clears their
   * rollover, in the caller's transaction — their remainder then expires like any past-due grant
   * (an `expire` operation or the next batch), never while an open hold is backed by it.
   */
  endGrantsAt(trx: Executor, owner: Owner, grantIds: readonly string[], at: Date): Promise<void>;

  /**
   * What named grants gave out (billing: a plan's allowances, when the payment that bought the
   * plan is taken back), counting the rollover buckets their remainders moved into: Σ (amount −
   * remaining − expired) over them — spent, captured, or taken by a clawback or a negative
   * adjustment; never what is still there or what expired unused (a rollover move is an expiry out
   * of one and the whole amount of the other: net zero). Also the buckets still holding credits,
   * so the caller can end them, and `held`: what they all still hold (Σ positive remaining). Once
   * the grants have ended and a batch has run, that is exactly what open holds keep in them: a
   * capture may still spend it.
   */
  grantsUsed(trx: Executor, owner: Owner, grantIds: readonly string[]): Promise<{ used: number; held: number; liveRollovers: string[] }>;

  /**
   * What refunds naming these entries (debits, captures) gave back so far, on the owner's account
   * (billing: a period's usage bonus counts the usage debits less what was refunded of them).
   */
  refundedOf(trx: Executor, owner: Owner, transactionIds: readonly string[]): Promise<number>;

  /**
   * What a member's spend cap on a pool counts now (workspaces' spend-cap reads): the cap, its
   * period, the member's debits and captures in it, and their open holds. Read with `db`, so an
   * end user's transaction reads it under row-level security.
   */
  memberSpend(db: Executor, workspaceId: string, memberId: string): Promise<MemberSpend>;
}

/** A member's spend on a pool, as its cap counts it (docs/ledger.md, "Workspace pools"). */
export interface MemberSpend {
  cap: number | null;
  period: 'month' | 'lifetime' | null;
  /** Debits and captures in the cap's period (a UTC calendar month, or ever). */
  spent: number;
  /** Open holds, whatever period they were made in. */
  held: number;
  periodStart: Date | null;
  periodEnd: Date | null;
}

/** Who pays in a priced consumption: an owner's account, and the pool member it spends for (if any). */
export interface Payer {
  owner: Owner;
  memberId?: string | null;
  /** Holds of this account the work may settle (`settleHold`): loaded with the account. */
  holdIds?: readonly string[];
}

/** One account inside a priced consumption. */
export interface ConsumingAccount {
  /** The balance and held credits now (after what was consumed so far). */
  readonly balance: number;
  readonly held: number;
  /** What a consumption over these tiers could take now, per tier, up to `want` (nothing changes). */
  coverable(tiers: ConsumeTier[], want?: number): { name: string; amount: number }[];
  /**
   * A pool: refuses (throws the refusal) unless this member may spend `amount` now — 404 for a
   * non-member (as for no such workspace), 403 for a viewer, `budget_exceeded` past their cap.
   */
  assertMaySpend(memberId: string, amount: number): void;
  /**
   * Takes `amount` tier by tier, each in consumption order. Ask only for what `coverable` said:
   * more is refused (`insufficient_credits`, raised) and takes nothing.
   */
  consume(c: { requestId: string; amount: number; reason: string; metadata: Record<string, unknown>; tiers: ConsumeTier[]; memberId?: string | null }): ConsumeResult;
  /**
   * Reserves `amount` (a hold): refused (thrown) when it is not available, and for a pool's member
   * as `assertMaySpend` refuses. Answers the hold's id.
   */
  hold(h: { requestId: string; amount: number; expiresInSeconds: number; metadata: Record<string, unknown>; memberId?: string | null }): string;
  /**
   * Settles an open hold of this account: captures `amount`, at most the hold (the rest is
   * released; 0 releases it all). Re-checks nothing of the payer — no role, cap or balance: the
   * hold was the authorization. Answers what was captured and the capture's entry (null when
   * nothing was taken); `open: false` when the hold is no longer open (expired, settled, not this
   * account's), and then nothing changes.
   */
  settleHold(s: { requestId: string; holdId: string; amount: number; metadata: Record<string, unknown> }): { open: boolean; captured: number; transactionId: string | null };
}

/** A user's ledger state as read for a quote (other modules only keep it and hand it back). */
export interface LedgerSnapshot {
  readonly account: AccountState;
  readonly grants: readonly GrantState[];
  readonly holds: readonly HoldState[];
}

export type { ConsumeResult, ConsumeTier, LedgerOp, OpResult, Owner };
export { accountIdOf } from './credits.js';
/** The ledger's own invariant check (balance = Σ ledger = Σ grants), for operators. */
export { reconcile, type ReconcileReport } from './credits.reconcile.js';
