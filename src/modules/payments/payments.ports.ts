import type { Executor } from '../../db/database.js';
import type { INTERVALS, SubscriptionStatus } from '../billing/billing.js';
import type { ProviderName } from './payments.provider.js';

/**
 * What payments hands to billing: one provider's subscription (or invoice) event, normalised and
 * matched to a user. Billing owns plans and subscriptions (0003); payments never writes them.
 *
 * Declared once, here, beside the port it travels through: payments produces it (every provider's
 * subscription events are normalised to it, less the matching: `SubscriptionFacts`), billing
 * implements the port. Its vocabularies are billing's (statuses, intervals), imported as types.
 */
export interface ProviderSubscriptionSync {
  provider: ProviderName;
  /** Provider event id (for audit). */
  eventId: string;
  providerSubscriptionId: string;
  providerCustomerId: string | null;
  /** After matching. */
  userId: string;
  /** Price / variant / product / plan id the provider sent. */
  providerPriceId: string | null;
  /**
   * A plan Tally chose from its own configuration (a one-time payment whose price, or signed
   * checkout reference, buys the plan at its price); null from subscription events, whose plan is
   * the one `providerPriceId` maps to. Never taken from metadata (buyers can set metadata).
   */
  planId: string | null;
  status: SubscriptionStatus;
  interval: (typeof INTERVALS)[number] | null;
  currentPeriodStart: Date | null;
  currentPeriodEnd: Date | null;
  cancelAtPeriodEnd: boolean;
  canceledAt: Date | null;
  trialEnd: Date | null;
  /** true when this event proves a period was paid (invoice.paid, subscription payment success) */
  periodPaid: boolean;
}

export interface SubscriptionPort {
  /**
   * Runs in the webhook's transaction; billing creates/updates the subscription and grants a paid
   * period's allowances exactly once. Returns the Tally subscription id, or null when the price
   * buys no plan (a credit package, say) and there is nothing to sync.
   */
  syncProviderSubscription(trx: Executor, input: ProviderSubscriptionSync): Promise<{ subscriptionId: string | null }>;

  /**
   * Runs in the webhook's transaction when a payment is taken back (refunded in full or
   * disputed). Without a `period`, after the subscription was ended (a one-time payment that
   * bought a plan): billing ends what all its allowances still hold — open windows (already, by
   * the cancel) and rollover buckets. With one (a subscription invoice), only the windows of that
   * period: they end now, with their rollover buckets, and the period's later windows are never
   * granted; the subscription itself is left to the provider's own events. Answers how many
   * allowance credits those windows gave out (granted − still remaining − expired unused), for
   * payments to claw back. 0 when there is no such subscription.
   */
  revokeAllowances(trx: Executor, input: AllowanceRevocation): Promise<{ used: number }>;
}

/** Which provider subscription's allowances to revoke, and the reason its ledger entries give. */
export interface AllowanceRevocation {
  provider: ProviderName;
  providerSubscriptionId: string;
  reason: string;
  /**
   * The period a subscription invoice paid: its windows are those that start in [start, end).
   * `end` null (an invoice that names no period: Lemon Squeezy's): the windows open at `start`,
   * the time the invoice was paid.
   */
  period?: { start: Date; end: Date | null };
}
