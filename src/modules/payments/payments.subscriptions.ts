import type { Executor } from '../../db/database.js';
import { newId } from '../../lib/ids.js';
import type { InvoiceFacts, SubscriptionFacts } from './payments.js';
import type { Matcher } from './payments.matching.js';
import type { AllowanceRevocation, ProviderSubscriptionSync, SubscriptionPort } from './payments.ports.js';
import type { ProviderName } from './payments.provider.js';
import * as repo from './payments.repository.js';

/**
 * Invoices (recorded for the paying user to read) and subscriptions (handed to billing's port in
 * the webhook's transaction: billing owns plans and subscriptions, payments never writes them).
 */
export class Subscriptions {
  constructor(
    private readonly matcher: Matcher,
    /** null until billing is wired in: subscription events are then logged only. */
    private readonly port: SubscriptionPort | null,
  ) {}

  async invoice(trx: Executor, provider: ProviderName, inv: InvoiceFacts, payload: unknown): Promise<string> {
    const match = await this.matcher.match(trx, provider, { metadata: {}, providerCustomerId: inv.providerCustomerId, email: inv.email });
    const customer = inv.providerCustomerId ? await repo.customerFind(trx, provider, inv.providerCustomerId) : undefined;
    const paymentKey = inv.providerPaymentId ? await repo.paymentKeyOf(trx, provider, [inv.providerPaymentId]) : undefined;
    const payment = paymentKey ? await repo.paymentLockByProviderId(trx, provider, paymentKey) : undefined;
    await repo.invoiceUpsert(trx, {
      id: newId('invoice'),
      provider,
      provider_invoice_id: inv.providerInvoiceId,
      provider_subscription_id: inv.providerSubscriptionId,
      user_id: match?.userId ?? null,
      customer_id: customer?.id ?? null,
      payment_id: payment?.id ?? null,
      status: inv.status,
      amount_due: inv.amountDue,
      amount_paid: inv.amountPaid,
      currency: inv.currency,
      invoice_pdf_url: inv.invoicePdfUrl,
      hosted_invoice_url: inv.hostedInvoiceUrl,
      period_start: inv.periodStart,
      period_end: inv.periodEnd,
      paid_at: inv.paidAt,
      raw_payload: JSON.stringify(payload ?? null),
    });
    return `invoice ${inv.providerInvoiceId} ${inv.status}`;
  }

  async subscription(trx: Executor, provider: ProviderName, eventId: string, s: SubscriptionFacts): Promise<string> {
    const match = await this.matcher.match(trx, provider, s);
    if (!match) return `subscription ${s.providerSubscriptionId} ${s.status}: no user matched`;
    if (s.providerCustomerId && (await this.matcher.mayLink(trx, provider, match.by, match.userId, s.email))) await this.matcher.link(trx, provider, s.providerCustomerId, match.userId, s.email);
    const { email: _e, metadata: _m, ...rest } = s;
    // The plan is the one its price maps to (billing looks it up): metadata never chooses it.
    return this.sync(trx, { ...rest, planId: null, provider, eventId, userId: match.userId });
  }

  /**
   * A taken-back payment's plan gives up its allowances (billing's port): what is left ends, and
   * the answer is how many allowance credits were used, to claw back. 0 without billing.
   */
  async revokeAllowances(trx: Executor, input: AllowanceRevocation): Promise<number> {
    return this.port ? (await this.port.revokeAllowances(trx, input)).used : 0;
  }

  /** Hands one subscription state to billing (also a one-time payment that bought a plan). */
  async sync(trx: Executor, input: ProviderSubscriptionSync): Promise<string> {
    if (!this.port) return `subscription ${input.providerSubscriptionId} ${input.status}: subscription sync not configured`;
    const { subscriptionId } = await this.port.syncProviderSubscription(trx, input);
    if (!subscriptionId) return `subscription ${input.providerSubscriptionId}: price ${input.providerPriceId ?? '(none)'} buys no plan; nothing to sync`;
    return `subscription ${input.providerSubscriptionId} ${input.status} synced to ${subscriptionId}`;
  }
}
