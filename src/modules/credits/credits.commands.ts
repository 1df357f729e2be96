import type { Static } from 'typebox';
import { errors } from '../../core/errors.js';
import { type IdempotencyScope, operation } from '../idempotency/idempotency.js';
import type { AdjustBody, CaptureBody, DebitBody, GrantBody, HoldBody, LedgerOp, RefundBody } from './credits.js';
import type { Owner } from './credits.js';

/**
 * API bodies → ledger operations. The HTTP routes and the SDK both build operations here, so a
 * request means the same thing (and hashes the same for idempotency) whichever way it arrives.
 */
export interface OpMeta {
  requestId: string;
  idem: IdempotencyScope | null;
}

/**
 * The ledger's operations as the API names them: the routes declare them and the SDK runs them, so
 * an Idempotency-Key is one key whichever way it arrives. The paths are those their keys were
 * recorded under before migration 0017 (idempotency.legacy.ts).
 */
export const LEDGER_OPERATIONS = {
  grant: operation('credits.grant', '/v1/credits/grant'),
  debit: operation('credits.debit', '/v1/credits/debit'),
  refund: operation('credits.refund', '/v1/credits/refund'),
  adjust: operation('credits.adjust', '/v1/credits/adjust'),
  hold: operation('holds.create', '/v1/holds'),
  capture: operation('holds.capture', '/v1/holds/:id/capture'),
  release: operation('holds.release', '/v1/holds/:id/release'),
} as const;

export function ownerOf(body: { user_id?: string; workspace_id?: string }): Owner {
  if (body.user_id !== undefined && body.workspace_id === undefined) return { userId: body.user_id };
  if (body.workspace_id !== undefined && body.user_id === undefined) return { workspaceId: body.workspace_id };
  throw errors.invalidRequest('Name exactly one of user_id or workspace_id', { field: 'user_id' });
}

/**
 * Who pays a debit or hold: `user_id` alone → the user; `workspace_id` alone → the pool, spent by
 * the service itself; both → the pool, spent for its member `user_id` (role and spend cap checked
 * by the ledger under the pool's lock: docs/ledger.md, "Workspace pools").
 */
export function payerOf(body: { user_id?: string; workspace_id?: string }): { owner: Owner; memberId: string | null } {
  if (body.user_id !== undefined && body.workspace_id !== undefined) return { owner: { workspaceId: body.workspace_id }, memberId: body.user_id };
  return { owner: ownerOf(body), memberId: null };
}

/** Sources Tally itself writes; an API grant cannot claim them. */
const RESERVED_SOURCES = new Set(['signup_bonus', 'refund', 'adjustment', 'allowance', 'rollover', 'usage_bonus', 'import', 'debt']);

export function grantOp(b: Static<typeof GrantBody>, m: OpMeta): LedgerOp {
  if (b.source !== undefined && RESERVED_SOURCES.has(b.source)) {
    throw errors.invalidRequest(`source "${b.source}" is reserved`, { field: 'source' });
  }
  return grantOpUnchecked(b, m);
}

const grantOpUnchecked = (b: Static<typeof GrantBody>, m: OpMeta): LedgerOp => ({
  kind: 'grant',
  ...m,
  amount: b.amount,
  reason: b.reason,
  class: b.class ?? 'default',
  source: b.source ?? 'grant',
  expiresAt: b.expires_at ? new Date(b.expires_at) : null,
  priority: b.priority ?? 0,
  metadata: b.metadata ?? {},
});

export const debitOp = (b: Static<typeof DebitBody>, m: OpMeta): LedgerOp => ({
  kind: 'debit',
  ...m,
  amount: b.amount,
  reason: b.reason,
  metadata: b.metadata ?? {},
  memberId: payerOf(b).memberId,
});

export const refundOp = (b: Static<typeof RefundBody>, m: OpMeta): LedgerOp => ({
  kind: 'refund',
  ...m,
  amount: b.amount,
  reason: b.reason,
  transactionId: b.transaction_id ?? null,
  metadata: b.metadata ?? {},
});

export const adjustOp = (b: Static<typeof AdjustBody>, m: OpMeta): LedgerOp => ({
  kind: 'adjust',
  ...m,
  amount: b.amount,
  reason: b.reason,
  metadata: b.metadata ?? {},
});

export const holdOp = (b: Static<typeof HoldBody>, m: OpMeta): LedgerOp => ({
  kind: 'hold',
  ...m,
  amount: b.amount,
  expiresInSeconds: b.expires_in_seconds ?? 900,
  metadata: b.metadata ?? {},
  memberId: payerOf(b).memberId,
});

export const captureOp = (holdId: string, b: Static<typeof CaptureBody>, m: OpMeta): LedgerOp => ({
  kind: 'capture',
  ...m,
  holdId,
  amount: b.amount ?? null,
  metadata: b.metadata ?? {},
});

export const releaseOp = (holdId: string, m: OpMeta): LedgerOp => ({ kind: 'release', ...m, holdId });
