import type { Executor } from '../../db/database.js';
import type { Ledger, LedgerOp } from '../credits/credits.port.js';
import { operation, scopeOf } from '../idempotency/idempotency.js';
import type { ProviderName } from './payments.provider.js';

/** Who payments' own ledger operations are recorded for (idempotency scopes). */
const PAYMENTS = { principal: 'payments' };

/** Payments' ledger operations (the paths: what their keys were recorded under before 0017). */
const GRANT = operation('payments.grant', '/internal/payments/grant');
const CLAWBACK = operation('payments.clawback', '/internal/payments/clawback');

/** A payment's row, as far as its ledger movements need it. */
export interface PaidRow {
  id: string;
  provider: ProviderName;
  providerPaymentId: string;
}

/**
 * The only place payments calls the credits ledger (and reads its answers), so a change to the
 * ledger's result type touches this file alone. Every movement runs with `executeIn` in the
 * caller's (webhook or resolve) transaction, next to the rows that explain it, under an
 * idempotency scope named after the payment: `payment:<id>:grant` and
 * `payment:<id>:clawback:<target>` (and `payment:<id>:allowance-clawback`) — a retried transaction, or a resolve racing a webhook, moves
 * credits once.
 */
export class PaymentsLedger {
  constructor(
    private readonly credits: Ledger,
    private readonly clock: () => Date,
  ) {}

  /** Grants what a payment bought; the ledger transaction and the grant it created. */
  async grant(
    trx: Executor,
    userId: string,
    payment: PaidRow,
    bought: { credits: number; class: string; expireDays: number | null },
  ): Promise<{ transactionId: string; grantId: string | null }> {
    const { id, provider, providerPaymentId } = payment;
    const body = await this.execute(trx, userId, {
      kind: 'grant',
      requestId: `payment:${id}`,
      idem: scopeOf(GRANT, PAYMENTS, `payment:${id}:grant`, { body: { payment_id: id, credits: bought.credits } }),
      amount: bought.credits,
      reason: `purchase (${provider} ${providerPaymentId})`,
      class: bought.class,
      source: 'purchase',
      // Expiry counts from the grant, not from the payment.
      expiresAt: bought.expireDays === null ? null : new Date(this.clock().getTime() + bought.expireDays * 86_400_000),
      priority: 0,
      metadata: { payment_id: id, provider, provider_payment_id: providerPaymentId },
    });
    const txn = (body as { transaction: { id: string; grant_id: string | null } }).transaction;
    return { transactionId: txn.id, grantId: txn.grant_id };
  }

  /**
   * Takes `amount` back from the grant `grantTransactionId` made (then other grants, then debt:
   * the ledger's clawback, docs/ledger.md). Keyed by the clawed-back total it brings the payment
   * to (`target`), so the same refund level claws back once however often it is delivered.
   */
  async clawback(
    trx: Executor,
    c: { userId: string; paymentId: string; grantTransactionId: string; target: number; amount: number; reason: string },
  ): Promise<void> {
    const { paymentId, target } = c;
    await this.execute(trx, c.userId, {
      kind: 'clawback',
      requestId: `payment:${paymentId}`,
      idem: scopeOf(CLAWBACK, PAYMENTS, `payment:${paymentId}:clawback:${target}`, { body: { payment_id: paymentId, target } }),
      amount: c.amount,
      reason: c.reason.slice(0, 500),
      transactionId: c.grantTransactionId,
      metadata: { payment_id: paymentId },
    });
  }

  /**
   * Takes back the allowance credits a plan bought by this payment gave out before the plan ended
   * (a full refund or a dispute): from the buyer's other grants, then debt — the allowances
   * themselves have ended. One operation per payment (`payment:<id>:allowance-clawback`): the plan
   * ends once, and a replay of the same key moves nothing.
   */
  async allowanceClawback(trx: Executor, c: { userId: string; paymentId: string; amount: number; reason: string }): Promise<void> {
    const { paymentId } = c;
    await this.execute(trx, c.userId, {
      kind: 'clawback',
      requestId: `payment:${paymentId}`,
      idem: scopeOf(CLAWBACK, PAYMENTS, `payment:${paymentId}:allowance-clawback`, { body: { payment_id: paymentId, allowance: c.amount } }),
      amount: c.amount,
      reason: c.reason.slice(0, 500),
      transactionId: null,
      metadata: { payment_id: paymentId, allowance: true },
    });
  }

  /**
   * One movement; its answer's body. A refusal (the balance cap, say) throws: it fails the whole
   * webhook transaction (5xx, the provider retries once the cause is fixed) or the resolve.
   */
  private async execute(trx: Executor, userId: string, op: LedgerOp): Promise<unknown> {
    const [result] = await this.credits.executeIn(trx, { userId }, [op]);
    if (!result || !result.ok) {
      const e = result && !result.ok ? result.error : null;
      throw new Error(`ledger refused ${op.kind} for ${userId}: ${e?.code ?? 'unknown'} ${e?.message ?? ''}`.trim());
    }
    return result.value;
  }
}
