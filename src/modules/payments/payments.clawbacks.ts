import type { Executor } from '../../db/database.js';
import type { EventSink } from '../../core/events.js';
import { isSettled, type PaymentAction, type PaymentStatus, tellPayment } from './payments.js';
import type { PaymentsLedger } from './payments.ledger.js';
import type { ProviderName } from './payments.provider.js';
import { paymentByAnyId } from './payments.refs.js';
import * as repo from './payments.repository.js';
import type { Subscriptions } from './payments.subscriptions.js';

/**
 * The credits a refund of `refunded` (of `amount` paid) takes back from a payment that bought
 * `credits`: pro rata, rounded half up. The one rounding rule, whether the refund comes after the
 * success (a clawback) or before it (withheld from the grant: payments.purchases.ts), so both
 * orders leave the buyer with exactly the same credits.
 */
export const refundedCredits = (credits: number, refunded: number, amount: number): number =>
  amount > 0 ? Math.round((credits * refunded) / amount) : credits;

/**
 * Refunds and disputes take back what the payment granted. A refund claws back pro rata to the
 * money refunded; a dispute, everything not yet taken back. Both find their payment by any of its
 * ids, within their own provider only; one that arrives before its payment fails (5xx) so the
 * provider retries it after the payment. One that arrives while the payment is still pending is
 * recorded on its row (`amount_refunded`, or the status `disputed`), and the success then grants
 * only what was not refunded — nothing once disputed (payments.purchases.ts). A full refund or a
 * dispute of a payment that bought a plan ends that plan (billing's port); of a subscription
 * invoice's payment, it takes back the allowance of the period that invoice paid.
 */
export class Clawbacks {
  constructor(
    private readonly ledger: PaymentsLedger,
    private readonly subscriptions: Subscriptions,
    private readonly clock: () => Date,
    private readonly events: EventSink,
  ) {}

  async refund(trx: Executor, provider: ProviderName, eventId: string, r: Extract<PaymentAction, { kind: 'refund' }>): Promise<string> {
    const row = await paymentByAnyId(trx, provider, r.providerPaymentId, r.refs ?? []);
    // Out of order (the refund before its payment): fail, so the provider retries after the payment.
    if (!row) throw new Error(`refund for unknown ${provider} payment ${r.providerPaymentId} (retry after the payment event)`);
    const amount = row.amount;
    const before = row.amount_refunded;
    // Cumulative totals (Stripe, Lemon Squeezy, PayPal's total_refunded_amount) never go down;
    // deltas (Creem, bare PayPal refunds) add up. Never more than was paid.
    const refunded = Math.min(amount, r.cumulative ? Math.max(before, r.amount) : before + r.amount);
    const full = refunded >= amount;
    const status = row.status === 'disputed' ? 'disputed' : full && isSettled(row.status as PaymentStatus) ? 'refunded' : row.status;
    await repo.paymentUpdate(trx, row.id, { amount_refunded: refunded, status, refunded_at: this.clock() });
    // Pro rata: the share of the credits that the refunded share of the money bought.
    const target = refundedCredits(row.credits, refunded, amount);
    const clawed = await this.clawBack(trx, row, target, `refund of ${provider} payment ${r.providerPaymentId}`);
    const ended = full ? await this.endPlan(trx, provider, eventId, row, `refund of ${provider} payment ${r.providerPaymentId}`) : null;
    // A refund that moved the refunded total (a repeated or older total moves nothing: silent).
    if (refunded > before) await tellPayment(this.events, trx, 'payment.refunded', await mustFind(trx, row.id));
    return `payment ${row.id} refunded ${refunded}/${amount}${clawed > 0 ? `; clawed back ${clawed} credits` : ''}${ended ? `; ${ended}` : ''}`;
  }

  /**
   * A dispute takes back everything. Before the payment succeeded it settles the payment as
   * `disputed`, so the success never grants (the same end as success then dispute: nothing kept).
   */
  async dispute(trx: Executor, provider: ProviderName, eventId: string, d: Extract<PaymentAction, { kind: 'dispute' }>): Promise<string> {
    const row = await paymentByAnyId(trx, provider, d.providerPaymentId, d.refs ?? []);
    if (!row) throw new Error(`dispute for unknown ${provider} payment ${d.providerPaymentId} (retry after the payment event)`);
    await repo.paymentUpdate(trx, row.id, { status: 'disputed', disputed_at: this.clock() });
    const clawed = await this.clawBack(trx, row, row.credits, `dispute of ${provider} payment ${d.providerPaymentId}`);
    const ended = await this.endPlan(trx, provider, eventId, row, `dispute of ${provider} payment ${d.providerPaymentId}`);
    if (row.status !== 'disputed') await tellPayment(this.events, trx, 'payment.disputed', await mustFind(trx, row.id));
    return `payment ${row.id} disputed${clawed > 0 ? `; clawed back ${clawed} credits` : ''}${ended ? `; ${ended}` : ''}`;
  }

  /**
   * A one-time payment that bought a plan, fully refunded or disputed after it succeeded: the plan
   * ends now (billing's port, as a provider cancellation of the subscription keyed by the payment;
   * billing expires the open allowance windows), and the allowance credits used before then are
   * clawed back (`takeBackAllowances`). Only a plan the payment activated — succeeded,
   * assigned to a user, priced at a plan — and only once: a later event finds it `refunded` or
   * `disputed`. Before the success nothing was activated (the success never activates a fully
   * refunded or disputed payment's plan), so there is nothing to end.
   */
  private async endPlan(trx: Executor, provider: ProviderName, eventId: string, payment: repo.PaymentRow, why: string): Promise<string | null> {
    const userId = payment.user_id;
    if (payment.status !== 'succeeded' || !userId) return null;
    if (!payment.plan_id) return this.takeBackPeriods(trx, provider, payment, userId, why);
    const ended = await this.subscriptions.sync(trx, {
      provider,
      eventId,
      userId,
      providerSubscriptionId: payment.provider_payment_id,
      providerCustomerId: payment.provider_customer_id,
      // Neither a plan nor a price: this names the existing subscription, it never starts one.
      providerPriceId: null,
      planId: null,
      status: 'canceled',
      interval: null,
      currentPeriodStart: null,
      currentPeriodEnd: null,
      cancelAtPeriodEnd: false,
      canceledAt: null,
      trialEnd: null,
      periodPaid: false,
    });
    const taken = await this.takeBackAllowances(trx, provider, payment, userId, why);
    return taken > 0 ? `${ended}; clawed back ${taken} allowance credits` : ended;
  }

  /**
   * A subscription invoice's payment, fully refunded or disputed after it succeeded: the
   * allowance windows of the period that invoice paid end now and what they gave out is clawed
   * back (billing's port; other periods are untouched). The subscription goes on as the provider
   * says: Stripe, say, sends its own `customer.subscription.updated`/`deleted` (past_due,
   * canceled) if it stops it. Once per payment, as `endPlan` (the caller's status check; the
   * ledger key `payment:<id>:allowance-clawback`). Nothing for a payment that paid no invoice of a
   * subscription (a credit package).
   */
  private async takeBackPeriods(trx: Executor, provider: ProviderName, payment: repo.PaymentRow, userId: string, why: string): Promise<string | null> {
    const invoices = await repo.subscriptionInvoicesOfPayment(trx, payment.id);
    if (invoices.length === 0) return null;
    const reason = `subscription allowances: ${why}`;
    let used = 0;
    for (const inv of invoices) {
      // No period named (Lemon Squeezy): the windows open when the invoice was paid.
      const period = inv.period_start ? { start: inv.period_start, end: inv.period_end } : { start: inv.paid_at ?? inv.created_at, end: null };
      used += await this.subscriptions.revokeAllowances(trx, { provider, providerSubscriptionId: inv.provider_subscription_id, reason, period });
    }
    const ids = invoices.map((i) => i.provider_invoice_id).join(', ');
    if (used <= 0) return `invoice ${ids}: its period's allowances ended`;
    await this.ledger.allowanceClawback(trx, { userId, paymentId: payment.id, amount: used, reason });
    return `invoice ${ids}: its period's allowances ended; clawed back ${used} allowance credits`;
  }

  /**
   * The plan just ended: its allowance credits used before then are taken back like a package's
   * credits (the ledger's clawback: other grants, then debt), and what they still held ends with
   * the plan (billing ends its rollover buckets too). Runs only where `endPlan` ends a plan, which
   * happens once per payment (a later event finds it `refunded` or `disputed`); the ledger key is
   * the payment's, so even a retried transaction takes nothing twice.
   */
  private async takeBackAllowances(trx: Executor, provider: ProviderName, payment: repo.PaymentRow, userId: string, why: string): Promise<number> {
    const reason = `plan allowances: ${why}`;
    const used = await this.subscriptions.revokeAllowances(trx, { provider, providerSubscriptionId: payment.provider_payment_id, reason });
    if (used <= 0) return 0;
    await this.ledger.allowanceClawback(trx, { userId, paymentId: payment.id, amount: used, reason });
    return used;
  }

  /**
   * Brings the payment's clawed-back credits up to `target` (never down). The ledger key names the
   * target, so the same refund level claws back once however often it is delivered.
   */
  private async clawBack(trx: Executor, payment: repo.PaymentRow, target: number, reason: string): Promise<number> {
    const { id, user_id: userId, grant_transaction_id: grantTransactionId } = payment;
    const done = payment.credits_clawed_back;
    // Nothing was granted yet (unmatched, or not succeeded): nothing to take back.
    if (!grantTransactionId || !userId || target <= done) return 0;
    const amount = target - done;
    await this.ledger.clawback(trx, {
      userId,
      paymentId: id,
      grantTransactionId,
      target,
      amount,
      reason,
    });
    await repo.paymentUpdate(trx, id, { credits_clawed_back: target });
    return amount;
  }
}

async function mustFind(trx: Executor, id: string): Promise<repo.PaymentView> {
  const row = await repo.paymentFind(trx, id);
  if (!row) throw new Error(`payment ${id} vanished inside its own transaction`);
  return row;
}
