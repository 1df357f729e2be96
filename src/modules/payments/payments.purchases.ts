import type { Updateable } from 'kysely';
import type { Db, Executor } from '../../db/database.js';
import type { Payments } from '../../db/database.types.js';
import { errors } from '../../core/errors.js';
import type { EventSink } from '../../core/events.js';
import { newId } from '../../lib/ids.js';
import type { Catalogue, Purchase } from './payments.catalogue.js';
import { refundedCredits } from './payments.clawbacks.js';
import { isSettled, paymentBody, type PaymentFacts, type PaymentStatus, tellPayment } from './payments.js';
import type { PaymentsLedger } from './payments.ledger.js';
import type { Match, Matcher } from './payments.matching.js';
import type { ProviderName } from './payments.provider.js';
import { claimKey } from './payments.refs.js';
import * as repo from './payments.repository.js';
import type { Subscriptions } from './payments.subscriptions.js';
import { must } from '../../lib/must.js';
import type { CheckoutRow } from './checkout/checkout.repository.js';
import type { SignedCheckouts } from './checkout/checkout.verify.js';

/**
 * A payment's life: recorded once per provider payment (whatever ids events name it by), matched
 * to who paid, priced from the catalogue, and granted once — or left in the unmatched queue for an
 * operator to resolve. Once succeeded, a payment never fulfils again: events repeating it find the
 * row settled and do nothing.
 */
export class Purchases {
  constructor(
    private readonly db: Db,
    private readonly matcher: Matcher,
    private readonly catalogue: Catalogue,
    private readonly ledger: PaymentsLedger,
    private readonly subscriptions: Subscriptions,
    private readonly checkouts: SignedCheckouts,
    private readonly clock: () => Date,
    private readonly events: EventSink,
  ) {}

  /** A provider's word about a payment (in the webhook's transaction). */
  async apply(trx: Executor, provider: ProviderName, eventId: string, p: PaymentFacts, payload: unknown): Promise<string> {
    // The row is keyed by the first id any event named for this payment (payment_refs).
    const key = await claimKey(trx, provider, p.providerPaymentId, p.refs ?? []);
    const { row, created } = await repo.paymentClaim(trx, {
      id: newId('payment'),
      provider,
      provider_payment_id: key,
      provider_customer_id: p.providerCustomerId,
      status: 'created',
      amount: p.amount,
      currency: p.currency,
      email: p.email,
      match_status: 'unmatched',
      receipt_url: p.receiptUrl,
      description: p.description,
      metadata: JSON.stringify(p.metadata),
      raw_payload: JSON.stringify(payload ?? null),
    });
    const id = row.id;
    const current = row.status as PaymentStatus;
    if (isSettled(current)) return `payment ${id} already ${current}${created ? '' : ' (seen before)'}`;

    // A checkout Tally signed decides alone: verified, it names the user and what is bought;
    // refused (changed, replayed, expired, another deployment's), the payment grants nothing.
    const verdict = await this.checkouts.verify(trx, provider, id, p);
    if (verdict.kind === 'refused') return this.told(trx, id, p, await this.refuse(trx, id, row, p, payload, verdict.reason));
    if (verdict.kind === 'ok') return this.told(trx, id, p, await this.applyCheckout(trx, provider, eventId, row, p, payload, verdict.checkout));

    const match: Match | null = row.user_id
      ? { userId: row.user_id, by: (row.matched_by ?? 'metadata') as Match['by'] }
      : await this.matcher.match(trx, provider, p);
    const base = {
      ...reported(row, p, payload),
      ...(match ? { user_id: match.userId, match_status: row.match_status === 'resolved' ? 'resolved' : 'matched', matched_by: match.by } : {}),
    };
    // No customer is linked before the payment succeeded at its price (`succeeded`): a failed or
    // pending payment proves nothing about who the provider's customer is.
    if (p.status !== 'succeeded') {
      await repo.paymentUpdate(trx, id, base);
      return `payment ${id} ${p.status}`;
    }
    return this.told(trx, id, p, await this.succeeded(trx, provider, eventId, id, p, base, match));
  }

  /**
   * A payment that succeeded now (it was not settled before) is told once, with the payment as it
   * ends here — matched, through a signed checkout, or refused into the unmatched queue.
   */
  private async told(trx: Executor, id: string, p: PaymentFacts, outcome: string): Promise<string> {
    if (p.status !== 'succeeded') return outcome;
    const final = must(await repo.paymentFind(trx, id), 'a payment claimed above is still there');
    if (final.status === 'succeeded') {
      await tellPayment(this.events, trx, 'payment.succeeded', final);
      if (final.match_status === 'unmatched') await tellPayment(this.events, trx, 'payment.unmatched', final);
    }
    return outcome;
  }

  private async succeeded(trx: Executor, provider: ProviderName, eventId: string, id: string, p: PaymentFacts, base: Updateable<Payments>, match: Match | null): Promise<string> {
    const ref = this.matcher.reference(p.metadata);

    const priced = await this.catalogue.purchaseOf(trx, provider, p, ref);
    const purchase = priced.purchase;
    // What it buys is frozen on the row now: a package changed or deleted later changes nothing.
    const bought = {
      credits: priced.ok ? purchase.credits : 0,
      package_id: purchase.packageId,
      plan_id: priced.ok ? purchase.planId : null,
      credit_class: purchase.class,
      credits_expire_days: purchase.expireDays,
      provider_price_id: p.priceIds[0] ?? null,
      processed_at: this.clock(),
    };
    if (!priced.ok) {
      // A price that does not match (or a payment that buys nothing): never a grant. It waits in
      // the unmatched queue, without a user, for an admin to resolve (and decide the credits).
      const who = match ? ` (the payment names ${match.userId}, matched by ${match.by})` : '';
      await repo.paymentUpdate(trx, id, {
        ...base,
        ...bought,
        user_id: null,
        match_status: 'unmatched',
        matched_by: null,
        customer_id: null,
        unmatched_reason: `${priced.reason}${who}`.slice(0, 500),
      });
      return `payment ${id} succeeded; ${priced.reason} — waiting in the unmatched queue`;
    }
    // Paid at its price: only now may the payer's provider customer be linked (first link wins).
    const customerId = match && p.providerCustomerId && (await this.matcher.mayLink(trx, provider, match.by, match.userId, p.email)) ? await this.matcher.link(trx, provider, p.providerCustomerId, match.userId, p.email) : null;
    const updated = await repo.paymentUpdate(trx, id, { ...base, ...bought, ...(match ? { customer_id: customerId } : {}), unmatched_reason: match ? null : 'no user matched' });
    if (!match) return `payment ${id} succeeded; no user matched — waiting in the unmatched queue`;
    return this.fulfil(trx, provider, eventId, updated, purchase, p);
  }

  /**
   * A payment through a checkout Tally signed and the webhook verified: its user is the signed
   * one, and once paid it buys exactly what the checkout froze — if what was paid is the signed
   * price; otherwise it is refused like any other price that does not match. One payment per
   * checkout: a payment at the signed price binds it (a pending one too, so it may succeed after
   * the signature expired); a payment at another price, or a failed one, never binds it and gives
   * it up if it held it, so a 1-cent or failed payment cannot use up the buyer's checkout. Only a
   * payment that succeeded at the signed price links the payer's provider customer — and on
   * providers keying customers on e-mail only when that e-mail is the user's verified one
   * (`Matcher.mayLink`). The checkout row is locked (`verify`), so racing payments take turns.
   */
  private async applyCheckout(trx: Executor, provider: ProviderName, eventId: string, row: repo.PaymentRow, p: PaymentFacts, payload: unknown, checkout: CheckoutRow): Promise<string> {
    const id = row.id;
    const userId = checkout.user_id;
    const wrongPrice = this.checkouts.priceCheck(checkout, p.amount - (p.tax ?? 0), p.currency);
    if (p.status === 'failed' || wrongPrice) await this.checkouts.release(trx, checkout, id);
    const base = {
      ...reported(row, p, payload),
      user_id: userId,
      match_status: 'matched',
      matched_by: 'checkout',
      unmatched_reason: null,
    };
    if (p.status !== 'succeeded') {
      if (p.status !== 'failed' && !wrongPrice) await this.checkouts.bind(trx, checkout, id);
      await repo.paymentUpdate(trx, id, base);
      return `payment ${id} ${p.status} (checkout ${checkout.id})`;
    }
    const purchase = this.checkouts.purchaseOf(checkout);
    const bought = {
      credits: purchase.credits,
      package_id: purchase.packageId,
      plan_id: purchase.planId,
      credit_class: purchase.class,
      credits_expire_days: purchase.expireDays,
      provider_price_id: p.priceIds[0] ?? null,
      processed_at: this.clock(),
    };
    if (wrongPrice) return this.refuse(trx, id, row, p, payload, `${wrongPrice} (the checkout names ${userId})`, { ...bought, credits: 0, plan_id: null });
    await this.checkouts.bind(trx, checkout, id);
    const customerId = p.providerCustomerId && (await this.matcher.mayLink(trx, provider, 'checkout', userId, p.email)) ? await this.matcher.link(trx, provider, p.providerCustomerId, userId, p.email) : null;
    const updated = await repo.paymentUpdate(trx, id, { ...base, ...bought, customer_id: customerId });
    await this.checkouts.complete(trx, checkout);
    return this.fulfil(trx, provider, eventId, updated, purchase, p);
  }

  /**
   * A payment whose signed checkout is refused: recorded with what it says was paid, no user, no
   * customer link, no grant — it waits in the unmatched queue with the reason, for an operator.
   */
  private async refuse(trx: Executor, id: string, row: repo.PaymentRow, p: PaymentFacts, payload: unknown, reason: string, bought: Updateable<Payments> = {}): Promise<string> {
    await repo.paymentUpdate(trx, id, {
      ...reported(row, p, payload),
      ...bought,
      ...(p.status === 'succeeded' && !('processed_at' in bought) ? { processed_at: this.clock() } : {}),
      user_id: null,
      match_status: 'unmatched',
      matched_by: null,
      customer_id: null,
      unmatched_reason: reason.slice(0, 500),
    });
    return `payment ${id} ${p.status}; ${reason} — waiting in the unmatched queue`;
  }

  /**
   * The unmatched queue: assigns a payment to a user and grants what it was priced at (frozen on
   * its row), or `creditsOverride` instead — once, whatever retries, and even racing a webhook
   * (the ledger's idempotency key is the payment's). Opens its own transaction.
   */
  async resolve(paymentId: string, userId: string, addAlias: boolean, creditsOverride?: number) {
    return this.db.transaction().execute(async (trx) => {
      const row = await repo.paymentLock(trx, paymentId);
      if (!row) throw errors.notFound('Payment', paymentId);
      if (row.match_status !== 'unmatched') {
        throw errors.invalidState(`Payment ${paymentId} is already ${row.match_status}`, { match_status: row.match_status });
      }
      if (row.status !== 'succeeded' || row.amount_refunded > 0) {
        throw errors.invalidState(`Payment ${paymentId} is ${row.status}${row.amount_refunded > 0 ? ' (partly refunded)' : ''}; only a succeeded payment can be resolved`, { status: row.status });
      }
      if (!(await repo.userExists(trx, userId))) throw errors.notFound('User', userId);
      const provider = row.provider as ProviderName;
      const providerCustomerId = row.provider_customer_id;
      const customerId = providerCustomerId ? await this.matcher.link(trx, provider, providerCustomerId, userId, row.email) : null;
      if (addAlias && row.email) await repo.aliasInsert(trx, { id: newId('emailAlias'), user_id: userId, email: row.email, note: `payment ${paymentId}` });
      const updated = await repo.paymentUpdate(trx, paymentId, {
        user_id: userId,
        match_status: 'resolved',
        matched_by: 'admin',
        customer_id: customerId,
        unmatched_reason: null,
        ...(creditsOverride !== undefined ? { credits: creditsOverride } : {}),
      });
      const full = await repo.paymentLock(trx, paymentId);
      // Exactly what the payment was priced at when paid (frozen on its row): a package changed
      // or deleted since changes nothing.
      await this.fulfil(trx, provider, `resolve:${paymentId}`, must(full, 'a payment locked above is still there'), {
        credits: updated.credits,
        class: updated.credit_class ?? 'default',
        expireDays: updated.credits_expire_days,
        packageId: updated.package_id,
        planId: updated.plan_id,
        interval: null,
      }, { providerCustomerId, priceIds: updated.provider_price_id ? [updated.provider_price_id] : [] });
      return paymentBody(must(await repo.paymentFind(trx, paymentId), 'a payment locked above is still there'));
    });
  }

  /**
   * Grants what a matched, succeeded payment bought (credits exactly once; a plan through billing)
   * — less what was refunded before it succeeded. Refunds and successes may arrive in any order
   * (Stripe's asynchronous payments; any provider's retries), and the buyer must end with the same
   * credits either way: the share a refund takes back after the success (`refundedCredits`, the
   * clawback's rounding) is withheld from the grant and counted as clawed back, so later refunds
   * and disputes take back only the rest. A payment refunded in full grants nothing and activates
   * no plan (a full refund after the success ends the plan: payments.clawbacks.ts); a partial
   * refund keeps the plan, in either order. (Resolve never gets here with a refund: it refuses
   * refunded payments.)
   */
  private async fulfil(
    trx: Executor,
    provider: ProviderName,
    eventId: string,
    payment: repo.PaymentView,
    purchase: Purchase,
    p: Pick<PaymentFacts, 'providerCustomerId' | 'priceIds'>,
  ): Promise<string> {
    const id = payment.id;
    const userId = must(payment.user_id, 'a payment is fulfilled once matched');
    const providerPaymentId = payment.provider_payment_id;
    const amount = payment.amount;
    const refunded = payment.amount_refunded;
    const fullyRefunded = refunded > 0 && refunded >= amount;
    const withheld = refunded > 0 ? refundedCredits(purchase.credits, refunded, amount) : 0;
    const credits = purchase.credits - withheld;
    const outcomes: string[] = [];
    if (withheld > 0) {
      await repo.paymentUpdate(trx, id, { credits_clawed_back: withheld });
      outcomes.push(`payment ${id} was refunded ${refunded}/${amount} before it succeeded: ${withheld} of its ${purchase.credits} credits withheld`);
    }
    if (credits > 0) {
      const grant = await this.ledger.grant(trx, userId, { id, provider, providerPaymentId }, { ...purchase, credits });
      await repo.paymentUpdate(trx, id, { grant_transaction_id: grant.transactionId, grant_id: grant.grantId });
      outcomes.push(`payment ${id} granted ${credits} credits to ${userId}`);
    }
    if (purchase.planId && fullyRefunded) {
      outcomes.push(`payment ${id} was refunded in full before it succeeded: plan ${purchase.planId} not activated`);
    } else if (purchase.planId) {
      // A one-time payment that bought a plan: billing's port, as a subscription keyed by the payment.
      outcomes.push(
        await this.subscriptions.sync(trx, {
          provider,
          eventId,
          userId,
          providerSubscriptionId: providerPaymentId,
          providerCustomerId: p.providerCustomerId,
          providerPriceId: p.priceIds[0] ?? null,
          planId: purchase.planId,
          status: 'active',
          interval: purchase.interval,
          currentPeriodStart: null,
          currentPeriodEnd: null,
          cancelAtPeriodEnd: false,
          canceledAt: null,
          trialEnd: null,
          periodPaid: true,
        }),
      );
    }
    return outcomes.length > 0 ? outcomes.join('; ') : `payment ${id} succeeded; it buys nothing (no credits, package, plan or credit price)`;
  }
}

/**
 * The payment as this provider event reports it, whatever it is matched to. Refunds that arrived
 * while the payment was pending are on the row already: a success refunded in full is `refunded`
 * at once (and grants nothing: `fulfil`).
 */
function reported(row: repo.PaymentRow, p: PaymentFacts, payload: unknown) {
  const refunded = Math.min(row.amount_refunded, p.amount);
  const status: PaymentStatus = p.status === 'succeeded' && refunded > 0 && refunded >= p.amount ? 'refunded' : p.status;
  return {
    status,
    amount_refunded: refunded,
    amount: p.amount,
    currency: p.currency,
    email: p.email ?? row.email,
    receipt_url: p.receiptUrl ?? row.receipt_url,
    raw_payload: JSON.stringify(payload ?? null),
  };
}
