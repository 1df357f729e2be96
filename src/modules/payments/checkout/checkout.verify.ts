import type { Executor } from '../../../db/database.js';
import type { Purchase } from '../payments.catalogue.js';
import type { PaymentFacts } from '../payments.js';
import type { ProviderName } from '../payments.provider.js';
import * as repo from './checkout.repository.js';
import { fieldsOf, isComplete, itemOf, KEYS, type SignedFields, verifyFields } from './checkout.signing.js';

/** What a payment's signed checkout metadata is worth: nothing there, refused (why), or the checkout. */
export type CheckoutVerdict = { kind: 'none' } | { kind: 'refused'; reason: string } | { kind: 'ok'; checkout: repo.CheckoutRow };

/**
 * The webhook's side of checkouts Tally signs (docs/payments.md, "Checkouts"). A payment that
 * carries a signed checkout is trusted only as far as all of these hold; otherwise it is refused
 * with the reason — it grants nothing, matches nobody, links no customer, and waits in the
 * unmatched queue (it is never matched "as if the metadata were absent": someone changed it):
 *
 * - the MAC verifies over every field the metadata states (user, item, price, expiry, nonce);
 * - the nonce is a checkout this deployment created (another deployment's is not in its database),
 *   for this provider, and the metadata agrees with the row field by field;
 * - the provider's own checkout id, where the event names one, is the one Tally created (copied
 *   metadata on another checkout is refused, and so is any when Tally recorded none);
 * - a checkout buys with one payment only: the first payment seen with it at the signed price is
 *   bound to it (a failed one, or one at another price, is not, and gives it up if it held it), and
 *   any other payment carrying it while it is bound is a replay;
 * - a payment binding it for the first time does so before the signature expires (a payment
 *   already bound — pending, then paid days later — keeps it);
 * - once paid: the amount, net of tax, and the currency are the signed price.
 */
export class SignedCheckouts {
  constructor(
    private readonly keys: readonly Buffer[],
    private readonly clock: () => Date,
  ) {}

  /** Whether the payment names a signed checkout at all (else the other matching paths apply). */
  names(metadata: Record<string, string>): boolean {
    return metadata[KEYS.checkout] !== undefined || metadata[KEYS.sig] !== undefined;
  }

  /** The checkout a payment names, locked, if everything but the price holds (the price: `priceCheck`). */
  async verify(trx: Executor, provider: ProviderName, paymentId: string, p: PaymentFacts): Promise<CheckoutVerdict> {
    const md = p.metadata;
    if (!this.names(md)) return { kind: 'none' };
    const refused = (reason: string): CheckoutVerdict => ({ kind: 'refused', reason: `signed checkout refused: ${reason}` });
    const sig = md[KEYS.sig];
    const id = md[KEYS.checkout];
    if (!sig || !id) return refused('the metadata carries no checkout or no signature');
    if (isComplete(md)) {
      const stated = fieldsOf(md, null);
      if (!stated || !verifyFields(this.keys, stated, sig)) return refused('the metadata does not verify (changed after Tally signed it, or signed elsewhere)');
    }
    const row = await repo.checkoutLock(trx, id);
    if (!row) return refused(`checkout ${id.slice(0, 64)} was not created by this deployment`);
    const signed = fieldsOf(md, rowFields(row));
    if (!signed || !verifyFields(this.keys, signed, sig)) return refused('the metadata does not verify (changed after Tally signed it, or signed elsewhere)');
    if (!sameFields(signed, rowFields(row))) return refused(`the metadata does not match checkout ${row.id}`);
    if (row.provider !== provider) return refused(`checkout ${row.id} was created for ${row.provider}, not ${provider}`);
    // A checkout whose provider session Tally never recorded (still creating, or failed after the
    // provider made it) cannot vouch for a payment that names a provider checkout.
    if (p.checkoutId && !row.provider_checkout_id) return refused(`paid through ${provider} checkout ${p.checkoutId.slice(0, 64)}, but Tally recorded no ${provider} checkout for checkout ${row.id} (${row.status})`);
    if (p.checkoutId && row.provider_checkout_id && p.checkoutId !== row.provider_checkout_id) {
      return refused(`paid through ${provider} checkout ${p.checkoutId.slice(0, 64)}, not ${row.provider_checkout_id} that Tally created for checkout ${row.id}`);
    }
    if (row.payment_id && row.payment_id !== paymentId) return refused(`checkout ${row.id} was already used by payment ${row.payment_id}`);
    if (!row.payment_id && signed.expiresAt.getTime() <= this.clock().getTime()) return refused(`checkout ${row.id} expired at ${signed.expiresAt.toISOString()}`);
    return { kind: 'ok', checkout: row };
  }

  /** Binds the checkout to its payment (only a payment at the signed price, not failed: the caller). */
  async bind(trx: Executor, checkout: repo.CheckoutRow, paymentId: string): Promise<void> {
    if (!checkout.payment_id) await repo.checkoutUpdate(trx, checkout.id, { payment_id: paymentId });
  }

  /**
   * Gives the checkout up if this payment held it (it failed, or turned out to be at another
   * price): a later payment at the signed price may then buy it — within the signature's expiry.
   */
  async release(trx: Executor, checkout: repo.CheckoutRow, paymentId: string): Promise<void> {
    if (checkout.payment_id === paymentId && checkout.status !== 'completed') await repo.checkoutUpdate(trx, checkout.id, { payment_id: null });
  }

  /** Why what was paid is not the signed price (null: it is). `net` is the amount less tax. */
  priceCheck(checkout: repo.CheckoutRow, net: number, currency: string): string | null {
    if (net === Number(checkout.amount) && currency === checkout.currency) return null;
    return `signed checkout refused: checkout ${checkout.id} was signed at ${checkout.amount} ${checkout.currency}; paid ${net} ${currency}`;
  }

  /** What the checkout buys, as frozen on its row when it was created. */
  purchaseOf(checkout: repo.CheckoutRow): Purchase {
    return {
      credits: Number(checkout.credits),
      class: checkout.credit_class ?? 'default',
      expireDays: checkout.credits_expire_days === null ? null : Number(checkout.credits_expire_days),
      packageId: checkout.package_id,
      planId: checkout.plan_id,
      interval: checkout.plan_id ? ((checkout.billing_interval as 'monthly' | 'yearly' | null) ?? null) : null,
    };
  }

  async complete(trx: Executor, checkout: repo.CheckoutRow): Promise<void> {
    await repo.checkoutUpdate(trx, checkout.id, { status: 'completed', completed_at: this.clock() });
  }
}

function rowFields(row: repo.CheckoutRow): SignedFields {
  return { checkoutId: row.id, userId: row.user_id, item: itemOf(row), amount: Number(row.amount), currency: row.currency, expiresAt: row.expires_at as Date };
}

function sameFields(a: SignedFields, b: SignedFields): boolean {
  return (
    a.checkoutId === b.checkoutId &&
    a.userId === b.userId &&
    a.item === b.item &&
    a.amount === b.amount &&
    a.currency === b.currency &&
    Math.floor(a.expiresAt.getTime() / 1000) === Math.floor(b.expiresAt.getTime() / 1000)
  );
}
