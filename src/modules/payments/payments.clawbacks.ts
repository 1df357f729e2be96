import type { Executor } from '../../db/database.js';
import { isSettled, type PaymentAction, type PaymentStatus } from './payments.js';
import type { PaymentsLedger } from './payments.ledger.js';
import type { ProviderName } from './payments.provider.js';
import { paymentByAnyId } from './payments.refs.js';
import * as repo from './payments.repository.js';

type Row = Record<string, unknown>;

/**
 * Refunds and disputes take back what the payment granted. A refund claws back pro rata to the
 * money refunded; a dispute, everything not yet taken back. Both find their payment by any of its
 * ids, within their own provider only; one that arrives before its payment fails (5xx) so the
 * provider retries it after the payment.
 */
export class Clawbacks {
  constructor(
    private readonly ledger: PaymentsLedger,
    private readonly clock: () => Date,
  ) {}

  async refund(trx: Executor, provider: ProviderName, r: Extract<PaymentAction, { kind: 'refund' }>): Promise<string> {
    const row = await paymentByAnyId(trx, provider, r.providerPaymentId, r.refs ?? []);
    // Out of order (the refund before its payment): fail, so the provider retries after the payment.
    if (!row) throw new Error(`refund for unknown ${provider} payment ${r.providerPaymentId} (retry after the payment event)`);
    const amount = Number(row['amount']);
    const before = Number(row['amount_refunded']);
    // Cumulative totals (Stripe, Lemon Squeezy, PayPal's total_refunded_amount) never go down;
    // deltas (Creem, bare PayPal refunds) add up. Never more than was paid.
    const refunded = Math.min(amount, r.cumulative ? Math.max(before, r.amount) : before + r.amount);
    const full = refunded >= amount;
    const status = row['status'] === 'disputed' ? 'disputed' : full && isSettled(row['status'] as PaymentStatus) ? 'refunded' : row['status'];
    await repo.paymentUpdate(trx, String(row['id']), { amount_refunded: refunded, status, refunded_at: this.clock() });
    // Pro rata: the share of the credits that the refunded share of the money bought.
    const credits = Number(row['credits']);
    const target = amount > 0 ? Math.round((credits * refunded) / amount) : credits;
    const clawed = await this.clawBack(trx, row, target, `refund of ${provider} payment ${r.providerPaymentId}`);
    return `payment ${String(row['id'])} refunded ${refunded}/${amount}${clawed > 0 ? `; clawed back ${clawed} credits` : ''}`;
  }

  async dispute(trx: Executor, provider: ProviderName, d: Extract<PaymentAction, { kind: 'dispute' }>): Promise<string> {
    const row = await paymentByAnyId(trx, provider, d.providerPaymentId, d.refs ?? []);
    if (!row) throw new Error(`dispute for unknown ${provider} payment ${d.providerPaymentId} (retry after the payment event)`);
    await repo.paymentUpdate(trx, String(row['id']), { status: 'disputed', disputed_at: this.clock() });
    const clawed = await this.clawBack(trx, row, Number(row['credits']), `dispute of ${provider} payment ${d.providerPaymentId}`);
    return `payment ${String(row['id'])} disputed${clawed > 0 ? `; clawed back ${clawed} credits` : ''}`;
  }

  /**
   * Brings the payment's clawed-back credits up to `target` (never down). The ledger key names the
   * target, so the same refund level claws back once however often it is delivered.
   */
  private async clawBack(trx: Executor, payment: Row, target: number, reason: string): Promise<number> {
    const id = String(payment['id']);
    const done = Number(payment['credits_clawed_back']);
    // Nothing was granted yet (unmatched, or not succeeded): nothing to take back.
    if (!payment['grant_transaction_id'] || !payment['user_id'] || target <= done) return 0;
    const amount = target - done;
    await this.ledger.clawback(trx, {
      userId: String(payment['user_id']),
      paymentId: id,
      grantTransactionId: String(payment['grant_transaction_id']),
      target,
      amount,
      reason,
    });
    await repo.paymentUpdate(trx, id, { credits_clawed_back: target });
    return amount;
  }
}
