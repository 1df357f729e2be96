import type { Executor } from '../../db/database.js';
import type { SubscriptionEvents } from './billing.subscriptions.events.js';
import { newId } from '../../lib/ids.js';
import type { CatalogService } from './billing.catalog.service.js';
import { INTERVALS, oneOf } from './billing.js';
import { addMonths, type Interval, monthsOf } from './billing.periods.js';
import { lockSubscription, type SubscriptionCycles } from './billing.subscriptions.cycles.js';
import {
  subscriptionFindLivePrimary,
  subscriptionInsert,
  subscriptionLockByProvider,
  subscriptionUpdate,
} from './billing.subscriptions.repository.js';
import type { AllowanceRevocation, ProviderSubscriptionSync } from '../payments/payments.ports.js';

export type { ProviderSubscriptionSync };

/** The lifecycle step a provider's plan change goes through (SubscriptionsService.changePlan). */
export interface PlanChanger {
  changePlan(trx: Executor, id: string, planId: string): Promise<unknown>;
}

/**
 * Provider-managed subscriptions (payments' SubscriptionPort): the provider's state becomes the
 * subscription's, in the webhook's transaction. The provider renews; billing grants a paid
 * period's allowances once.
 */
export class ProviderSubscriptions {
  constructor(
    private readonly catalog: CatalogService,
    private readonly cycles: SubscriptionCycles,
    private readonly plans: PlanChanger,
    private readonly now: () => Date,
    private readonly events: SubscriptionEvents,
  ) {}

  /**
   * Payments' port: a payment behind a provider subscription was taken back (refunded in full or
   * disputed). A one-time payment that bought a plan (no period): ends what all its allowances
   * still hold (rollover buckets included). A subscription invoice: only the windows of the period
   * it paid; the subscription's status stays the provider's to change. Answers what those
   * allowances gave out; 0 for no such subscription.
   */
  async revokeAllowances(trx: Executor, input: AllowanceRevocation): Promise<{ used: number }> {
    const existing = await subscriptionLockByProvider(trx, input.provider, input.providerSubscriptionId);
    if (!existing) return { used: 0 };
    const sub = await lockSubscription(trx, existing.id);
    const now = this.now();
    if (input.period) return { used: await this.cycles.revokePeriod(trx, sub, input.period, now, input.reason) };
    return { used: await this.cycles.revoke(trx, sub, now, input.reason) };
  }

  /**
   * A provider's state → the subscription (created on first sight). A paid period that starts
   * after the current one closes it and opens the new one, granting its allowances once.
   */
  async sync(trx: Executor, input: ProviderSubscriptionSync): Promise<{ subscriptionId: string | null }> {
    let planId = input.planId;
    let interval = input.interval;
    if (!planId && input.providerPriceId) {
      const price = await this.catalog.planByProviderPrice(trx, input.provider, input.providerPriceId);
      if (price) {
        planId = price.plan_id;
        interval ??= oneOf(INTERVALS, price.billing_interval);
      }
    }
    const existing = await subscriptionLockByProvider(trx, input.provider, input.providerSubscriptionId);
    const now = this.now();
    if (!existing) {
      // A subscription whose price buys no plan (a recurring credit package) has nothing to sync.
      if (!planId) return { subscriptionId: null };
      const plan = await this.catalog.requirePlan(trx, planId);
      // A provider subscription replaces the user's live primary one (e.g. free → paid).
      const live = await subscriptionFindLivePrimary(trx, input.userId, { lock: true });
      if (live) await this.cycles.end(trx, await lockSubscription(trx, live.id), now, `replaced by ${input.provider} subscription`);
      const start = input.currentPeriodStart ?? now;
      const int: Interval = interval ?? 'monthly';
      const id = newId('subscription');
      const status = input.status === 'canceled' ? 'active' : input.status;
      await subscriptionInsert(trx, {
        id,
        user_id: input.userId,
        plan_id: plan.id,
        status,
        billing_interval: int,
        current_period_start: start,
        current_period_end: input.currentPeriodEnd ?? addMonths(start, monthsOf(int)),
        anchor_at: start,
        trial_start: input.trialEnd ? start : null,
        trial_end: input.trialEnd,
        cancel_at_period_end: input.cancelAtPeriodEnd,
        provider: input.provider,
        provider_subscription_id: input.providerSubscriptionId,
        provider_customer_id: input.providerCustomerId,
        metadata: JSON.stringify({ created_by_event: input.eventId }),
      });
      if (status === 'trialing' || status === 'active') await this.cycles.open(trx, id, now);
      await this.events.tell(trx, 'subscription.created', id);
      await this.events.pastDueIf(trx, id, 'new', status);
      if (input.status === 'canceled') await this.cycles.end(trx, await lockSubscription(trx, id), input.canceledAt ?? now, 'canceled at provider');
      return { subscriptionId: id };
    }

    let sub = await lockSubscription(trx, existing.id);
    if (sub.status === 'canceled') return { subscriptionId: sub.id }; // a late event never revives it
    if (planId && planId !== sub.plan_id) {
      await this.plans.changePlan(trx, sub.id, planId);
      sub = await lockSubscription(trx, sub.id);
    }
    if (input.status === 'canceled') {
      await this.cycles.end(trx, sub, input.canceledAt ?? now, 'canceled at provider');
      return { subscriptionId: sub.id };
    }
    const renewed = Boolean(input.periodPaid && input.currentPeriodStart && input.currentPeriodStart > sub.current_period_start);
    if (input.periodPaid && input.currentPeriodStart && input.currentPeriodStart > sub.current_period_start) {
      await this.cycles.closePeriod(trx, sub, input.currentPeriodStart);
      const end = input.currentPeriodEnd ?? addMonths(input.currentPeriodStart, monthsOf(sub.billing_interval));
      await subscriptionUpdate(trx, sub.id, { current_period_start: input.currentPeriodStart, current_period_end: end });
    }
    await subscriptionUpdate(trx, sub.id, {
      status: input.periodPaid && input.status !== 'past_due' ? 'active' : input.status,
      cancel_at_period_end: input.cancelAtPeriodEnd,
      provider_customer_id: input.providerCustomerId ?? undefined,
      trial_end: input.trialEnd ?? undefined,
      // A new trial end is told again before it comes (subscription.trial_ending).
      ...(input.trialEnd && input.trialEnd.getTime() !== sub.trial_end?.getTime() ? { trial_ending_told_at: null } : {}),
    });
    const after = await lockSubscription(trx, sub.id);
    if (after.status === 'active' || after.status === 'trialing') await this.cycles.open(trx, sub.id, now);
    if (renewed) await this.events.tell(trx, 'subscription.renewed', sub.id);
    await this.events.pastDueIf(trx, sub.id, sub.status, after.status);
    return { subscriptionId: sub.id };
  }
}
