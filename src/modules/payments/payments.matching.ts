import type { Executor } from '../../db/database.js';
import { newId } from '../../lib/ids.js';
import type { PaymentAction } from './payments.js';
import type { ProviderName } from './payments.provider.js';
import { type CheckoutReference, verifyReference } from './payments.reference.js';
import * as repo from './payments.repository.js';

/** How a payment found its user; 'admin' is a resolve from the unmatched queue. */
export type MatchedBy = 'reference' | 'metadata' | 'customer' | 'email' | 'alias';
export interface Match {
  userId: string;
  by: MatchedBy | 'admin';
}

/** What an event says about who paid. */
export interface Payer {
  metadata: Record<string, string>;
  providerCustomerId: string | null;
  email: string | null;
}

/**
 * Only these may link a provider customer to a user. The first link wins forever, so a weak claim
 * must not make one: an unsigned metadata user id is the buyer's word, and on providers that key
 * customers on an unverified e-mail (Lemon Squeezy, Creem) a stranger could otherwise check out as
 * the victim's customer naming himself, and own the victim's later payments.
 */
const LINKS: ReadonlySet<Match['by'] | 'checkout'> = new Set(['reference', 'checkout', 'customer', 'email', 'alias', 'admin']);

/**
 * Providers that key their customers on the e-mail the payer types (unverified): a customer there is
 * whoever typed the address first. A signed reference or checkout proves who *opened* the checkout,
 * not whose customer pays in it — an attacker may type the victim's address in his own checkout — so
 * on these a signed claim links the customer only when the payer's e-mail is the signed user's own
 * verified address.
 */
const EMAIL_KEYED: ReadonlySet<ProviderName> = new Set(['lemonsqueezy', 'creem']);
const SIGNED: ReadonlySet<Match['by'] | 'checkout'> = new Set(['reference', 'checkout']);

/**
 * Who paid: signed reference → linked customer → unsigned metadata user_id → verified e-mail →
 * alias → nobody (the caller queues the payment). An unverified address never matches: a stranger
 * may have signed up with the payer's address. Aliases are added by the service only, so they are
 * trusted as they stand. Provider-neutral: a provider only decides what lands in `Payer`.
 */
export class Matcher {
  constructor(
    /** Keys checkout references are verified with (all of them: rotation). */
    private readonly referenceKeys: readonly Buffer[],
    private readonly clock: () => Date,
    /** False (TALLY_PAYMENTS_UNSIGNED_USER_ID=off): an unsigned metadata user id matches nobody. */
    private readonly unsignedUserIds = true,
  ) {}

  /** A checkout reference in the metadata that Tally signed and that has not expired (else null). */
  reference(metadata: Record<string, string>): CheckoutReference | null {
    const value = metadata['tally_ref'];
    if (!value) return null;
    return verifyReference(this.referenceKeys, value, this.clock()).ref;
  }

  /**
   * A checkout reference Tally signed is the app's word; a linked customer is Tally's own record.
   * An unsigned metadata user id (buyers can set it on some providers' checkout links) still
   * matches — apps rely on it — but it comes after the linked customer, never links a customer
   * itself, and never decides what the payment buys.
   */
  async match(trx: Executor, provider: ProviderName, q: Payer): Promise<{ userId: string; by: MatchedBy } | null> {
    const ref = this.reference(q.metadata);
    if (ref && (await repo.userExists(trx, ref.userId))) return { userId: ref.userId, by: 'reference' };
    if (q.providerCustomerId) {
      const customer = await repo.customerFind(trx, provider, q.providerCustomerId);
      if (customer) return { userId: customer.user_id, by: 'customer' };
    }
    const fromMeta = this.unsignedUserIds ? (q.metadata['user_id'] ?? q.metadata['userId'] ?? q.metadata['tally_user_id']) : undefined;
    if (fromMeta && (await repo.userExists(trx, fromMeta))) return { userId: fromMeta, by: 'metadata' };
    if (q.email) {
      const byEmail = await repo.userIdByVerifiedEmail(trx, q.email);
      if (byEmail) return { userId: byEmail, by: 'email' };
      const byAlias = await repo.userIdByAlias(trx, q.email);
      if (byAlias) return { userId: byAlias, by: 'alias' };
    }
    return null;
  }

  /** Whether a match this strong may link the payer's provider customer to the user (see also `mayLink`). */
  canLink(by: Match['by'] | 'checkout'): boolean {
    return LINKS.has(by);
  }

  /**
   * Whether the payer's provider customer may be linked to the matched user: a strong enough match
   * (`canLink`) and, for a signed claim on a provider keying customers on e-mail, the payer's
   * e-mail being the user's own verified address. Callers link only once a payment succeeded at its
   * price (docs/payments.md, "Matching"): a failed or underpaid payment links nobody.
   */
  async mayLink(trx: Executor, provider: ProviderName, by: Match['by'] | 'checkout', userId: string, email: string | null): Promise<boolean> {
    if (!this.canLink(by)) return false;
    if (!SIGNED.has(by) || !EMAIL_KEYED.has(provider)) return true;
    return email !== null && (await repo.isVerifiedEmailOf(trx, userId, email));
  }

  /** Links a provider customer to a user (an existing link wins); the customer row's id. */
  async link(trx: Executor, provider: ProviderName, providerCustomerId: string, userId: string, email: string | null): Promise<string> {
    const row = await repo.customerLink(trx, { id: newId('customer'), user_id: userId, provider, provider_customer_id: providerCustomerId, email });
    return row.id;
  }

  /** A checkout that only says who a provider customer is (Stripe subscription checkouts). */
  async linkCustomer(trx: Executor, provider: ProviderName, c: Extract<PaymentAction, { kind: 'customer' }>): Promise<string> {
    const match = await this.match(trx, provider, c);
    if (!match) return `customer ${c.providerCustomerId} not matched to a user`;
    if (!(await this.mayLink(trx, provider, match.by, match.userId, c.email))) return `customer ${c.providerCustomerId} not linked: an unsigned metadata user id does not link customers, nor a signed claim whose payer's e-mail is not the user's verified address`;
    await this.link(trx, provider, c.providerCustomerId, match.userId, c.email);
    return `customer ${c.providerCustomerId} linked to ${match.userId}`;
  }
}
