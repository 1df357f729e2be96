import { Type } from 'typebox';
import type { IdempotencyScope, Outcome } from '../idempotency/idempotency.js';
import { iso, isoOrNull, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';

// ---------------------------------------------------------------------------------------------
// Domain state (what the engine computes over) and operations.
// ---------------------------------------------------------------------------------------------

/** Whose account: a user's, or a workspace's pool. */
export type Owner = { userId: string } | { workspaceId: string };

export interface AccountState {
  id: string;
  userId: string | null;
  workspaceId: string | null;
  balance: number;
  held: number;
  totalCredited: number;
  totalSpent: number;
  /** The seq of the account's last ledger entry (entries are numbered 1, 2, 3 … per account). */
  lastSeq: number;
  /** Moves on with every ledger write of the account (migration 0007): same version, same state. */
  version: number;
  /**
   * Below this balance the account is low: a `credits.low` event fires when a movement crosses it
   * downwards (migration 0023; docs/webhooks-out.md). Absent or null: the deployment's default.
   */
  lowThreshold?: number | null;
}

export interface GrantState {
  id: string;
  accountId: string;
  class: string;
  source: string;
  amount: number;
  remaining: number;
  priority: number;
  expiresAt: Date | null;
  expiredAt: Date | null;
  /** When set, the remainder at expiry moves into a `rollover` grant that expires then (billing). */
  rolloverUntil: Date | null;
  transactionId: string | null;
  metadata: Record<string, unknown>;
  createdAt: Date;
  isNew: boolean;
  dirty: boolean;
}

export const HOLD_STATUSES = ['held', 'captured', 'released', 'expired'] as const;
export type HoldStatus = (typeof HOLD_STATUSES)[number];
export const isFinalHold = (s: HoldStatus): boolean => s !== 'held';

export interface HoldState {
  id: string;
  accountId: string;
  userId: string | null;
  workspaceId: string | null;
  /** The workspace member a pool's hold was made for (null: a user's account, or the service's own). */
  memberId: string | null;
  amount: number;
  captured: number | null;
  status: HoldStatus;
  expiresAt: Date;
  transactionId: string | null;
  metadata: Record<string, unknown>;
  resolvedAt: Date | null;
  createdAt: Date;
  isNew: boolean;
  dirty: boolean;
}

/**
 * A workspace member spending from a pool, as loaded under the pool's row lock: their role (null:
 * not a member), their spend cap (null: none) and what it already counts — debits and captures
 * since the cap's period began, plus open holds.
 */
export interface SpenderState {
  memberId: string;
  role: string | null;
  /** The workspace is active: a deactivated one keeps its pool, but nobody spends it. */
  active: boolean;
  cap: number | null;
  period: 'month' | 'lifetime' | null;
  used: number;
}

/**
 * `clawback`: a payment's refund or dispute taking back the credits it bought (docs/ledger.md);
 * the only entry that may take a balance below zero.
 */
export const ENTRY_TYPES = ['grant', 'debit', 'refund', 'adjustment', 'capture', 'expiry', 'rollover', 'clawback'] as const;
export type EntryType = (typeof ENTRY_TYPES)[number];

export interface LedgerEntry {
  id: string;
  accountId: string;
  userId: string | null;
  workspaceId: string | null;
  /** The workspace member who spent from a pool (debit, capture, usage); null otherwise. */
  memberId: string | null;
  type: EntryType;
  amount: number;
  balanceAfter: number;
  reason: string;
  metadata: Record<string, unknown>;
  grantId: string | null;
  holdId: string | null;
  refundOf: string | null;
  /** Its place in the account's history: the order balance_after runs in. */
  seq: number;
  createdAt: Date;
}

/** A debit or capture that a refund names, with what it took and what was already given back. */
export interface RefundTarget {
  id: string;
  accountId: string;
  type: EntryType;
  amount: number;
  refunded: number;
  allocations: { grantId: string; amount: number }[];
  restoredByGrant: Map<string, number>;
}

/** A set of grants a `consume` takes from: by source and (optionally) class. An empty tier list = all. */
export interface ConsumeTier {
  name: string;
  sources: string[] | 'other';
  classes: string[] | null;
}

interface OpBase {
  /** For error bodies. */
  requestId: string;
  /** The Idempotency-Key of the request, recorded in the same transaction as the movement. */
  idem: IdempotencyScope | null;
}

export type LedgerOp = OpBase &
  (
    | {
        kind: 'grant';
        amount: number;
        reason: string;
        class: string;
        source: string;
        expiresAt: Date | null;
        priority: number;
        metadata: Record<string, unknown>;
        /** Billing allowances: where the remainder goes at expiry (see GrantState.rolloverUntil). */
        rolloverUntil?: Date | null;
      }
    | { kind: 'debit'; amount: number; reason: string; metadata: Record<string, unknown>; memberId?: string | null }
    /**
     * Billing usage: takes `amount` tier by tier (each tier in consumption order), never more than
     * is available. The caller (billing) checked availability and decides what an uncovered rest
     * means (overage or 402). Answers the entry and what each tier gave.
     */
    /** Ends named grants now (billing: a canceled or changed plan's allowance), without rollover. */
    | { kind: 'expire'; grantIds: string[]; reason: string }
    | { kind: 'consume'; amount: number; reason: string; metadata: Record<string, unknown>; tiers: ConsumeTier[]; memberId?: string | null }
    | { kind: 'adjust'; amount: number; reason: string; metadata: Record<string, unknown> }
    | { kind: 'refund'; amount: number; reason: string; transactionId: string | null; metadata: Record<string, unknown> }
    | { kind: 'hold'; amount: number; expiresInSeconds: number; metadata: Record<string, unknown>; memberId?: string | null }
    | { kind: 'capture'; holdId: string; amount: number | null; metadata: Record<string, unknown> }
    | { kind: 'release'; holdId: string }
    /** Nothing but the expiry every batch starts with: the scheduler's way to expire idle accounts. */
    | { kind: 'sweep' }
    /**
     * Takes back credits a payment granted (refund, dispute). `transactionId` names the payment's
     * grant entry: that grant's remaining goes first, then other grants; what the account no
     * longer has becomes debt (a negative balance). Service-internal: no HTTP route builds it.
     */
    | { kind: 'clawback'; amount: number; reason: string; transactionId: string | null; metadata: Record<string, unknown> }
    /**
     * An opening balance carried over from another system (`tally import`, docs/import.md): the
     * account's first entry, equal to the source's balance (signed, not zero). Service-internal: no
     * HTTP route builds it (credits.engine.opening.ts). `buckets` splits a positive opening into
     * grants of their own class and expiry (000's allowances and rollover buckets); they add up to
     * `amount`. Absent: one non-expiring grant of class `default`.
     */
    | { kind: 'open'; amount: number; reason: string; metadata: Record<string, unknown>; buckets?: OpeningBucket[] }
  );

/** One part of a positive opening balance: a grant with its class and expiry (credits.engine.opening.ts). */
export interface OpeningBucket {
  amount: number;
  class: string;
  expiresAt: Date | null;
  metadata: Record<string, unknown>;
}

/** What an operation answered (also what a replay returns): see Outcome. */
export type OpResult = Outcome;

// ---------------------------------------------------------------------------------------------
// API shapes.
// ---------------------------------------------------------------------------------------------

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const Transaction = Type.Object(
  {
    id: Type.String(),
    user_id: Nullable(Type.String()),
    workspace_id: Nullable(Type.String()),
    member_id: Nullable(Type.String({ description: 'The workspace member who spent from the pool (null: not a member spend)' })),
    type: Type.Union(ENTRY_TYPES.map((t) => Type.Literal(t))),
    amount: Type.Integer(),
    balance_after: Type.Integer(),
    reason: Type.String(),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    grant_id: Nullable(Type.String()),
    hold_id: Nullable(Type.String()),
    refund_of: Nullable(Type.String()),
    created_at: Timestamp,
  },
  { title: 'Transaction' },
);

export const GrantSummary = Type.Object(
  {
    id: Type.String(),
    class: Type.String(),
    source: Type.String(),
    remaining: Type.Integer(),
    expires_at: NullableTimestamp,
    priority: Type.Integer(),
  },
  { title: 'Grant' },
);

export const Balance = Type.Object(
  {
    user_id: Nullable(Type.String()),
    workspace_id: Nullable(Type.String()),
    balance: Type.Integer(),
    held: Type.Integer(),
    available: Type.Integer(),
    total_credited: Type.Integer(),
    total_spent: Type.Integer(),
    grants: Type.Array(GrantSummary),
  },
  { title: 'Balance' },
);

export const Movement = Type.Object({ transaction: Transaction, balance: Balance }, { title: 'Movement' });

export const Hold = Type.Object(
  {
    id: Type.String(),
    user_id: Nullable(Type.String()),
    workspace_id: Nullable(Type.String()),
    member_id: Nullable(Type.String({ description: 'The workspace member the pool hold was made for' })),
    amount: Type.Integer(),
    captured: Nullable(Type.Integer()),
    status: Type.Union(HOLD_STATUSES.map((s) => Type.Literal(s))),
    expires_at: Timestamp,
    transaction_id: Nullable(Type.String()),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    created_at: Timestamp,
    resolved_at: NullableTimestamp,
  },
  { title: 'Hold' },
);

/** Credits are positive safe integers; 2^53 is far beyond any cap but keeps sums exact. */
export const Amount = Type.Integer({ minimum: 1, maximum: 1_000_000_000_000 });
const Reason = Type.String({ minLength: 1, maxLength: 500 });
const OwnerId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' });
/** Every money body names exactly one owner: a user, or a workspace pool. */
const Owner = { user_id: Type.Optional(OwnerId), workspace_id: Type.Optional(OwnerId) };

export const GrantBody = Type.Object(
  {
    ...Owner,
    amount: Amount,
    reason: Reason,
    class: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,32}$' })),
    source: Type.Optional(Type.String({ pattern: '^[a-z0-9_]{1,32}$' })),
    expires_at: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
    priority: Type.Optional(Type.Integer({ minimum: -1000, maximum: 1000 })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const DebitBody = Type.Object(
  { ...Owner, amount: Amount, reason: Reason, metadata: Type.Optional(Metadata) },
  { additionalProperties: false },
);

export const RefundBody = Type.Object(
  {
    ...Owner,
    amount: Amount,
    reason: Reason,
    transaction_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const AdjustBody = Type.Object(
  {
    ...Owner,
    amount: Type.Integer({ minimum: -1_000_000_000_000, maximum: 1_000_000_000_000, not: { const: 0 } }),
    reason: Reason,
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const HoldBody = Type.Object(
  {
    ...Owner,
    amount: Amount,
    expires_in_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 30 * 24 * 3600, default: 900 })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

/*
 * Capture and release may name whose hold the caller expects (`Owner`, optional): when named, a
 * hold of any other account is 404 and nothing changes — an app that passes a hold id from its user through cannot settle another
 * user's hold. `workspace_id` names a pool's hold (with or without the member's `user_id`).
 */
export const CaptureBody = Type.Object(
  { amount: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 })), metadata: Type.Optional(Metadata), ...Owner },
  { additionalProperties: false },
);

export const ReleaseBody = Type.Object({ ...Owner }, { additionalProperties: false });

/** The account a capture or release names, if it names one. */
export const expectedAccountOf = (b: { user_id?: string; workspace_id?: string } | undefined): string | null =>
  b?.workspace_id !== undefined ? accountIdOf({ workspaceId: b.workspace_id }) : b?.user_id !== undefined ? accountIdOf({ userId: b.user_id }) : null;

// ---------------------------------------------------------------------------------------------
// Mappers: state → API body. Used for responses and for what idempotent replays return.
// ---------------------------------------------------------------------------------------------

export function transactionBody(e: LedgerEntry) {
  return {
    id: e.id,
    user_id: e.userId,
    workspace_id: e.workspaceId,
    member_id: e.memberId,
    type: e.type,
    amount: e.amount,
    balance_after: e.balanceAfter,
    reason: e.reason,
    metadata: e.metadata,
    grant_id: e.grantId,
    hold_id: e.holdId,
    refund_of: e.refundOf,
    created_at: iso(e.createdAt),
  };
}

export function balanceBody(a: AccountState, liveGrants: GrantState[]) {
  return {
    user_id: a.userId,
    workspace_id: a.workspaceId,
    balance: a.balance,
    held: a.held,
    available: a.balance - a.held,
    total_credited: a.totalCredited,
    total_spent: a.totalSpent,
    grants: liveGrants.map((g) => ({
      id: g.id,
      class: g.class,
      source: g.source,
      remaining: g.remaining,
      expires_at: isoOrNull(g.expiresAt),
      priority: g.priority,
    })),
  };
}

export function holdBody(h: HoldState) {
  return {
    id: h.id,
    user_id: h.userId,
    workspace_id: h.workspaceId,
    member_id: h.memberId,
    amount: h.amount,
    captured: h.captured,
    status: h.status,
    expires_at: iso(h.expiresAt),
    transaction_id: h.transactionId,
    metadata: h.metadata,
    created_at: iso(h.createdAt),
    resolved_at: isoOrNull(h.resolvedAt),
  };
}

/** Debt left by a clawback: a grant of source `debt` whose remaining is negative (docs/ledger.md). */
export const DEBT_SOURCE = 'debt';
export const isDebt = (g: GrantState): boolean => g.source === DEBT_SOURCE && g.remaining < 0;

/** The account id of an owner: deterministic, so no lookup is needed to find it. */
export const accountIdOf = (owner: { userId: string } | { workspaceId: string }): string =>
  'userId' in owner ? `acc_u_${owner.userId}` : `acc_w_${owner.workspaceId}`;
