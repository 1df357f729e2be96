import type { Executor } from '../../db/database.js';
import type { DomainError } from '../../core/errors.js';
import { accountIdOf, type Ledger, type Owner } from '../credits/credits.port.js';
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
}

const principalOf = (requestId: string): string => `gateway:${requestId}`;
const GATEWAY_HOLD = operation('gateway.hold');
const GATEWAY_SETTLE = operation('gateway.settle');

export function creditsLedger(credits: Ledger): GatewayLedger {
  return {
    accountOf: accountIdOf,
    async hold(trx, owner, requestId, amount, expiresInSeconds, memberId = null) {
      const body = { amount, request_id: requestId };
      const [result] = await credits.executeIn(trx, owner, [
        {
          kind: 'hold',
          requestId,
          idem: scopeOf(GATEWAY_HOLD, { principal: principalOf(requestId) }, 'hold', { params: { request_id: requestId }, body }),
          amount,
          expiresInSeconds,
          metadata: { gateway_request_id: requestId, reason: 'LLM gateway request' },
          memberId,
        },
      ]);
      if (!result) throw new Error('the ledger answered no result for a hold');
      if (!result.ok) return { ok: false, error: result.error };
      return { ok: true, holdId: (result.value as { id: string }).id };
    },
    async capture(trx, owner, requestId, holdId, amount) {
      const body = { hold_id: holdId, amount };
      const [result] = await credits.executeIn(trx, owner, [
        {
          kind: 'capture',
          requestId,
          idem: scopeOf(GATEWAY_SETTLE, { principal: principalOf(requestId) }, 'settle', { params: { request_id: requestId }, body }),
          holdId,
          amount,
          metadata: { gateway_request_id: requestId },
        },
      ]);
      if (!result) throw new Error('the ledger answered no result for a capture');
      return result.ok ? { ok: true } : { ok: false, error: result.error };
    },
  };
}
