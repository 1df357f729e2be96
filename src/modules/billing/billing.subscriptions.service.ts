import type { Invalidations } from '../../lib/invalidations.js';
import type { Static } from 'typebox';
import type { Database, Executor } from '../../db/database.js';
import { elevate } from '../../db/request-role.js';
import { errors } from '../../core/errors.js';
import { type EventSink, NO_EVENTS } from '../../core/events.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { Ledger } from '../credits/credits.port.js';
import type { AllowanceRevocation } from '../payments/payments.ports.js';
import type { QueueService } from '../queue/queue.service.js';
import type { CatalogService } from './billing.catalog.service.js';
import { isFreePlan, type PlanView, priceOf, type SubscriptionCreateBody, subscriptionOf, type SubscriptionUpdateBody } from './billing.js';
import { addMonths, type Interval, monthsOf } from './billing.periods.js';
import { lockSubscription, SubscriptionCycles } from './billing.subscriptions.cycles.js';
import { ProviderSubscriptions, type ProviderSubscriptionSync } from './billing.subscriptions.provider.js';
import {
  subscriptionFind,
  subscriptionFindLivePrimary,
  subscriptionFindOwner,
  subscriptionFindTrial,
  subscriptionInsert,
  subscriptionListOfUser,
  subscriptionUpdate,
  userExists,
} from './billing.subscriptions.repository.js';
import { type DuePreview, SubscriptionScheduler } from './billing.subscriptions.scheduler.js';
import { SubscriptionEvents } from './billing.subscriptions.events.js';

export type { ProviderSubscriptionSync } from './billing.subscriptions.provider.js';
export { BILLING_ADVANCE } from './billing.subscriptions.scheduler.js';

/** An interval a plan does not price (null) is not on offer: 400, for the service too. */
function assertOffered(plan: PlanView, interval: Interval): void {
  if (priceOf(plan, interval) === null) {
    throw errors.invalidRequest(`Plan ${plan.id} is not offered ${interval}`, { field: 'billing_interval', plan_id: plan.id });
  }
}

/**
 * Subscriptions: the lifecycle (subscribe, cancel, activate, past_due, change plan) here; their
 * periods and allowance windows in `billing.subscriptions.cycles.ts`, provider-managed ones in
 * `…provider.ts`, the scheduler's renewals in `…scheduler.ts`. Every state change runs in the
 * caller's transaction with the subscription row locked, and every allowance window is granted
 * through an `allowance_cycles` row whose primary key makes the grant happen once (docs/billing.md).
 */
export class SubscriptionsService {
  private readonly cycles: SubscriptionCycles;
  private readonly provider: ProviderSubscriptions;
  private readonly scheduler: SubscriptionScheduler;
  private readonly events: SubscriptionEvents;

  constructor(
    database: Database,
    private readonly catalog: CatalogService,
    credits: Ledger,
    private readonly now: () => Date,
    /** Told after each subscription `runDue` advances (the scheduler and `tally billing run`). */
    invalidations?: Invalidations,
    /** Where subscription events go (subscription.*; docs/webhooks-out.md). */
    sink: EventSink = NO_EVENTS,
  ) {
    this.events = new SubscriptionEvents(sink);
    this.cycles = new SubscriptionCycles(catalog, credits, now, this.events);
    this.provider = new ProviderSubscriptions(catalog, this.cycles, this, now, this.events);
    this.scheduler = new SubscriptionScheduler(database, catalog, this.cycles, this.events, invalidations);
  }

  async create(trx: Executor, principal: Principal, body: Static<typeof SubscriptionCreateBody>) {
    const plan = await this.catalog.requirePlan(trx, body.plan_id);
    const interval: Interval = body.billing_interval ?? 'monthly';
    if (!plan.is_active) throw errors.invalidState(`Plan ${plan.id} is not active`, { plan_id: plan.id });
    if (principal.kind !== 'service') {
      if (principal.kind !== 'user' || principal.userId !== body.user_id) throw errors.forbidden('You can only subscribe yourself');
      // Free on every interval it offers, not only on the one asked for (docs/billing.md).
      if (!isFreePlan(plan)) {
        throw errors.forbidden('Paid plans are bought through a payment, not subscribed to directly');
      }
      if (body.trial_days !== undefined || body.pay_as_you_go !== undefined) {
        throw errors.forbidden('Only the service can set trial_days or pay_as_you_go');
      }
      await elevate(trx); // checked above: a free plan for oneself
    }
    assertOffered(plan, interval);
    if (!(await userExists(trx, body.user_id))) throw errors.notFound('User', body.user_id);
    await this.assertNoLivePrimary(trx, body.user_id);
    const now = this.now();
    const trialDays = body.trial_days ?? plan.trial_days;
    if (body.trial_days === undefined && trialDays > 0 && !isFreePlan(plan)) {
      // A paid plan's trial, once per user: another subscription (after a cancel) names its trial.
      const had = await subscriptionFindTrial(trx, body.user_id, plan.id);
      if (had) {
        throw errors.conflict(`User ${body.user_id} already had a trial of plan ${plan.id}; pass trial_days (0: none) to subscribe again`, {
          reason: 'trial_used',
          subscription_id: had.id,
        });
      }
    }
    const id = newId('subscription');
    await subscriptionInsert(trx, {
      id,
      user_id: body.user_id,
      plan_id: plan.id,
      status: trialDays > 0 ? 'trialing' : 'active',
      billing_interval: interval,
      pay_as_you_go: body.pay_as_you_go ?? null,
      current_period_start: now,
      current_period_end: addMonths(now, monthsOf(interval)),
      anchor_at: now,
      trial_start: trialDays > 0 ? now : null,
      trial_end: trialDays > 0 ? new Date(now.getTime() + trialDays * 86_400_000) : null,
      self_service: principal.kind !== 'service',
      metadata: JSON.stringify(body.metadata ?? {}),
    });
    await this.cycles.open(trx, id, now);
    await this.events.tell(trx, 'subscription.created', id);
    return this.get(trx, id);
  }

  async get(db: Executor, id: string) {
    const row = await subscriptionFind(db, id);
    if (!row) throw errors.notFound('Subscription', id);
    return subscriptionOf(row);
  }

  /** A subscription as `principal` may see it: all for the service, one's own for a user, else 404. */
  async getFor(db: Executor, principal: Principal, id: string) {
    const sub = await this.get(db, id);
    if (!owns(principal, sub.user_id)) throw errors.notFound('Subscription', id);
    return sub;
  }

  async listForUser(db: Executor, userId: string) {
    return (await subscriptionListOfUser(db, userId)).map(subscriptionOf);
  }

  async update(trx: Executor, id: string, patch: Static<typeof SubscriptionUpdateBody>) {
    await lockSubscription(trx, id);
    if (patch.pay_as_you_go !== undefined || patch.metadata !== undefined) {
      await subscriptionUpdate(trx, id, {
        pay_as_you_go: patch.pay_as_you_go,
        metadata: patch.metadata === undefined ? undefined : JSON.stringify(patch.metadata),
      });
    }
    return this.get(trx, id);
  }

  /** Cancel at period end (default: the paid period is kept), or now (its allowances end now). */
  async cancel(trx: Executor, principal: Principal, id: string, atPeriodEnd: boolean) {
    // Read first as the caller (RLS hides others' subscriptions), then act as the owner.
    const own = await subscriptionFindOwner(trx, id);
    if (!own || !owns(principal, own.user_id)) throw errors.notFound('Subscription', id);
    if (principal.kind === 'user') await elevate(trx); // checked above: one's own subscription
    const sub = await lockSubscription(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('The subscription is already canceled', { status: sub.status });
    const now = this.now();
    if (atPeriodEnd) {
      await subscriptionUpdate(trx, id, { cancel_at_period_end: true, canceled_at: now });
    } else {
      await this.cycles.end(trx, sub, now, 'subscription canceled');
    }
    return this.get(trx, id);
  }

  /** Payment confirmed (or the service says so): trialing / past_due → active. */
  async activate(trx: Executor, id: string) {
    const sub = await lockSubscription(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('A canceled subscription cannot be activated', { status: sub.status });
    await subscriptionUpdate(trx, id, { status: 'active' });
    await this.cycles.open(trx, id, this.now());
    return this.get(trx, id);
  }

  async markPastDue(trx: Executor, id: string) {
    const sub = await lockSubscription(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('A canceled subscription cannot become past_due', { status: sub.status });
    await subscriptionUpdate(trx, id, { status: 'past_due' });
    await this.events.pastDueIf(trx, id, sub.status, 'past_due');
    return this.get(trx, id);
  }

  /**
   * Upgrade or downgrade, effective now. Proration is in credits: the old plan's open allowance
   * windows end now (their remainder expires, no rollover), and the new plan grants, for each of
   * its allowances, the share of the current window that is left (floor(amount × time left /
   * window length)). Rollover buckets already earned stay. The billing period does not move unless
   * the interval changes (then a new period starts now). Money proration is the payment provider's.
   */
  async changePlan(trx: Executor, id: string, planId: string, interval?: Interval) {
    const sub = await lockSubscription(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('A canceled subscription cannot change plan', { status: sub.status });
    const plan = await this.catalog.requirePlan(trx, planId);
    if (!plan.is_active) throw errors.invalidState(`Plan ${plan.id} is not active`, { plan_id: plan.id });
    // A provider's subscription is priced by the provider; the service must pick an offered interval.
    if (!sub.provider) assertOffered(plan, interval ?? sub.billing_interval);
    const now = this.now();
    await this.cycles.expireOpenAllowances(trx, sub, now, `plan changed from ${sub.plan_id} to ${plan.id}`);
    const newInterval = interval && interval !== sub.billing_interval ? interval : null;
    if (newInterval) await this.cycles.closePeriod(trx, sub, now);
    await subscriptionUpdate(trx, id, {
      plan_id: plan.id,
      // The service chose this plan: renewals no longer depend on it staying free.
      self_service: false,
      // A new interval starts a new period (and anchor) now.
      ...(newInterval
        ? { billing_interval: newInterval, current_period_start: now, current_period_end: addMonths(now, monthsOf(newInterval)), anchor_at: now }
        : {}),
    });
    await this.cycles.open(trx, id, now, { prorate: true });
    return this.get(trx, id);
  }

  /** Payments' SubscriptionPort: a provider's state → the subscription (billing.subscriptions.provider.ts). */
  async syncProviderSubscription(trx: Executor, input: ProviderSubscriptionSync): Promise<{ subscriptionId: string | null }> {
    return this.provider.sync(trx, input);
  }

  /** Payments' SubscriptionPort: a taken-back payment's plan gives up its allowances (billing.subscriptions.provider.ts). */
  async revokeAllowances(trx: Executor, input: AllowanceRevocation): Promise<{ used: number }> {
    return this.provider.revokeAllowances(trx, input);
  }

  // ---- the scheduler's part (billing.subscriptions.scheduler.ts) -----------------------------

  /** Everything due at `at`, each subscription in its own transaction (idempotent). */
  async runDue(at: Date, limit = 500): Promise<{ processed: number; ids: string[]; errors: { subscription_id: string; error: string }[] }> {
    return this.scheduler.runDue(at, limit);
  }

  /** What runDue(at) would do, rolled back (`tally billing run --dry-run`). */
  previewDue(at: Date, limit = 500): Promise<DuePreview[]> {
    return this.scheduler.previewDue(at, limit);
  }

  /** One background job per due subscription and due instant; returns how many were enqueued. */
  async enqueueDue(queue: QueueService, at: Date = this.now(), limit = 500): Promise<number> {
    return this.scheduler.enqueueDue(queue, at, limit);
  }

  /** Registers the queue handler that advances one subscription (at the worker's `now`). */
  registerWith(queue: QueueService): void {
    this.scheduler.registerWith(queue);
  }

  private async assertNoLivePrimary(trx: Executor, userId: string): Promise<void> {
    const live = await subscriptionFindLivePrimary(trx, userId);
    if (live) {
      throw errors.conflict(`User ${userId} already has subscription ${live.id}; change its plan instead`, { subscription_id: live.id });
    }
  }
}

/** The service acts on every subscription; a user only on their own. */
function owns(principal: Principal, userId: string): boolean {
  return principal.kind === 'service' || (principal.kind === 'user' && principal.userId === userId);
}
