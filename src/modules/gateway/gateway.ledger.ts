import type { Executor } from '../../db/database.js';
import type { DomainError } from '../../core/errors.js';
import { accountIdOf, type Ledger, type LedgerOp, type OpResult, type Owner } from '../credits/credits.port.js';
import { operation, scopeOf } from '../idempotency/idempotency.js';

/**
 * The gateway's one door to the credits ledger (issue 14): a hold before the upstream call, one
 * capture of the priced cost after it. Every movement carries an Idempotency scope derived from the
 * gateway request id, so a second settlement of the same request can never move money (it replays
 * or is refused). Nothing else in the module talks to credits.
 */
export interface GatewayLedger {
  /** The ledger account an owner's gateway spend is carried on (gateway_carries). */
  accountOf(owner: Owner): string;
  /**
   * Holds `amount` credits for a request, in the caller's transaction; a refusal is a value. A
   * workspace key's hold names its user as the pool's member (role and spend cap: docs/ledger.md).
   */
  hold(
    trx: Executor,
    owner: Owner,
    requestId: string,
    amount: number,
    expiresInSeconds: number,
    memberId?: string | null,
  ): Promise<{ ok: true; holdId: string } | { ok: false; error: DomainError }>;
  /** Captures `amount` (≤ held; 0 gives everything back) of the request's hold, in the caller's transaction. */
  capture(trx: Executor, owner: Owner, requestId: string, holdId: string, amount: number): Promise<{ ok: true } | { ok: false; error: DomainError }>;
  /** `hold` for many requests in one ledger batch (accounts locked together, in id order); answers in order. */
  holdMany(trx: Executor, holds: readonly HoldRequest[]): Promise<({ ok: true; holdId: string } | { ok: false; error: DomainError })[]>;
  /** `capture` for many requests in one ledger batch; answers in order. */
  captureMany(trx: Executor, captures: readonly CaptureRequest[]): Promise<({ ok: true } | { ok: false; error: DomainError })[]>;
}

export interface HoldRequest {
  owner: Owner;
  requestId: string;
  amount: number;
  expiresInSeconds: number;
  memberId: string | null;
}

export interface CaptureRequest {
  owner: Owner;
  requestId: string;
  holdId: string;
  amount: number;
}

const principalOf = (requestId: string): string => `gateway:${requestId}`;
const GATEWAY_HOLD = operation('gateway.hold');
const GATEWAY_SETTLE = operation('gateway.settle');

const holdOp = (h: HoldRequest): LedgerOp => ({
  kind: 'hold',
  requestId: h.requestId,
  idem: scopeOf(GATEWAY_HOLD, { principal: principalOf(h.requestId) }, 'hold', { params: { request_id: h.requestId }, body: { amount: h.amount, request_id: h.requestId } }),
  amount: h.amount,
  expiresInSeconds: h.expiresInSeconds,
  metadata: { gateway_request_id: h.requestId, reason: 'LLM gateway request' },
  memberId: h.memberId,
});

const captureOp = (c: CaptureRequest): LedgerOp => ({
  kind: 'capture',
  requestId: c.requestId,
  idem: scopeOf(GATEWAY_SETTLE, { principal: principalOf(c.requestId) }, 'settle', { params: { request_id: c.requestId }, body: { hold_id: c.holdId, amount: c.amount } }),
  holdId: c.holdId,
  amount: c.amount,
  metadata: { gateway_request_id: c.requestId },
});

const heldOf = (r: OpResult | undefined): { ok: true; holdId: string } | { ok: false; error: DomainError } => {
  if (!r) throw new Error('the ledger answered no result for a hold');
  return r.ok ? { ok: true, holdId: (r.value as { id: string }).id } : { ok: false, error: r.error };
};

const capturedOf = (r: OpResult | undefined): { ok: true } | { ok: false; error: DomainError } => {
  if (!r) throw new Error('the ledger answered no result for a capture');
  return r.ok ? { ok: true } : { ok: false, error: r.error };
};

export function creditsLedger(credits: Ledger): GatewayLedger {
  return {
    accountOf: accountIdOf,
    async hold(trx, owner, requestId, amount, expiresInSeconds, memberId = null) {
      const [result] = await credits.executeIn(trx, owner, [holdOp({ owner, requestId, amount, expiresInSeconds, memberId })]);
      return heldOf(result);
    },
    async capture(trx, owner, requestId, holdId, amount) {
      const [result] = await credits.executeIn(trx, owner, [captureOp({ owner, requestId, holdId, amount })]);
      return capturedOf(result);
    },
    async holdMany(trx, holds) {
      const results = await credits.executeManyIn(trx, holds.map((h) => ({ owner: h.owner, op: holdOp(h) })));
      return holds.map((_, i) => heldOf(results[i]));
    },
    async captureMany(trx, captures) {
      const results = await credits.executeManyIn(trx, captures.map((c) => ({ owner: c.owner, op: captureOp(c) })));
      return captures.map((_, i) => capturedOf(results[i]));
    },
  };
}
