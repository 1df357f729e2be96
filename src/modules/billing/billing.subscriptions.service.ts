import { newAccountVersion } from '../credits/credits.batch-sql.js';
import { sql } from 'kysely';
import type { Invalidations } from '../../lib/invalidations.js';
import type { Static } from 'typebox';
import type { Database, Executor } from '../../db/database.js';
import { elevate } from '../../db/request-role.js';
import { errors } from '../../core/errors.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { CreditsService } from '../credits/credits.service.js';
import type { QueueService } from '../queue/queue.service.js';
import type { CatalogService } from './billing.catalog.service.js';
import {
  isFreePlan,
  priceOf,
  type Provider,
  type SubscriptionCreateBody,
  subscriptionOf,
  type SubscriptionStatus,
} from './billing.js';
import { addMonths, allowanceWindowAt, type AllowanceWindow, type Interval, monthsOf, windowAt } from './billing.periods.js';

type Plan = Awaited<ReturnType<CatalogService['requirePlan']>>;
type SubRow = {
  id: string;
  user_id: string;
  plan_id: string;
  status: SubscriptionStatus;
  billing_interval: Interval;
  current_period_start: Date;
  current_period_end: Date;
  anchor_at: Date;
  trial_end: Date | null;
  cancel_at_period_end: boolean;
  provider: string | null;
  self_service: boolean;
};

/** An interval a plan does not price (null) is not on offer: 400, for the service too. */
function assertOffered(plan: Plan, interval: Interval): void {
  if (priceOf(plan, interval) === null) {
    throw errors.invalidRequest(`Plan ${plan.id} is not offered ${interval}`, { field: 'billing_interval', plan_id: plan.id });
  }
}

/** A provider's view of a subscription, normalised by the payments module (see payments.ports.ts). */
export interface ProviderSubscriptionSync {
  provider: Provider;
  eventId: string;
  providerSubscriptionId: string;
  providerCustomerId: string | null;
  userId: string;
  providerPriceId: string | null;
  planId: string | null;
  status: SubscriptionStatus;
  interval: Interval | null;
  currentPeriodStart: Date | null;
  currentPeriodEnd: Date | null;
  cancelAtPeriodEnd: boolean;
  canceledAt: Date | null;
  trialEnd: Date | null;
  periodPaid: boolean;
}

/** The background-queue job type that advances one subscription. */
export const BILLING_ADVANCE = 'billing.advance';

/** A provider-managed subscription whose period ended without a paid renewal turns past_due after this. */
const PROVIDER_GRACE_MS = 3 * 86_400_000;

/**
 * Subscriptions and their allowance windows. Every state change runs in the caller's transaction
 * with the subscription row locked, and every allowance window is granted through an
 * `allowance_cycles` row whose primary key makes the grant happen once (docs/billing.md).
 */
export class SubscriptionsService {
  constructor(
    private readonly database: Database,
    private readonly catalog: CatalogService,
    private readonly credits: CreditsService,
    private readonly now: () => Date,
    /** Told after each subscription `runDue` advances (the scheduler and `tally billing run`). */
    private readonly invalidations?: Invalidations,
  ) {}

  async create(trx: Executor, principal: Principal, body: Static<typeof SubscriptionCreateBody>) {
    const plan = await this.catalog.requirePlan(trx, body.plan_id);
    const interval = (body.billing_interval ?? 'monthly') as Interval;
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
    const user = await trx.selectFrom('users').select('id').where('id', '=', body.user_id).executeTakeFirst();
    if (!user) throw errors.notFound('User', body.user_id);
    await this.assertNoLivePrimary(trx, body.user_id);
    const now = this.now();
    const trialDays = body.trial_days ?? plan.trial_days;
    if (body.trial_days === undefined && trialDays > 0 && !isFreePlan(plan)) {
      // A paid plan's trial, once per user: another subscription (after a cancel) names its trial.
      const had = await trx
        .selectFrom('subscriptions')
        .select('id')
        .where('user_id', '=', body.user_id)
        .where('plan_id', '=', plan.id)
        .where('trial_start', 'is not', null)
        .executeTakeFirst();
      if (had) {
        throw errors.conflict(`User ${body.user_id} already had a trial of plan ${plan.id}; pass trial_days (0: none) to subscribe again`, {
          reason: 'trial_used',
          subscription_id: had.id,
        });
      }
    }
    const id = newId('subscription');
    await trx
      .insertInto('subscriptions')
      .values({
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
      })
      .execute();
    await this.openCycles(trx, id, now);
    return this.get(trx, id);
  }

  async get(db: Executor, id: string) {
    const row = await db
      .selectFrom('subscriptions as s')
      .innerJoin('plans as p', 'p.id', 's.plan_id')
      .selectAll('s')
      .select('p.pay_as_you_go as plan_payg')
      .where('s.id', '=', id)
      .executeTakeFirst();
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
    const rows = await db
      .selectFrom('subscriptions as s')
      .innerJoin('plans as p', 'p.id', 's.plan_id')
      .selectAll('s')
      .select('p.pay_as_you_go as plan_payg')
      .where('s.user_id', '=', userId)
      .orderBy('s.created_at', 'desc')
      .orderBy('s.id', 'desc')
      .limit(200)
      .execute();
    return rows.map(subscriptionOf);
  }

  async update(trx: Executor, id: string, patch: { pay_as_you_go?: boolean | null; metadata?: Record<string, unknown> }) {
    await this.lock(trx, id);
    const set: Record<string, unknown> = {};
    if (patch.pay_as_you_go !== undefined) set['pay_as_you_go'] = patch.pay_as_you_go;
    if (patch.metadata !== undefined) set['metadata'] = JSON.stringify(patch.metadata);
    if (Object.keys(set).length > 0) await trx.updateTable('subscriptions').set(set).where('id', '=', id).execute();
    return this.get(trx, id);
  }

  /** Cancel at period end (default: the paid period is kept), or now (its allowances end now). */
  async cancel(trx: Executor, principal: Principal, id: string, atPeriodEnd: boolean) {
    // Read first as the caller (RLS hides others' subscriptions), then act as the owner.
    const own = await trx.selectFrom('subscriptions').select('user_id').where('id', '=', id).executeTakeFirst();
    if (!own || !owns(principal, own.user_id)) throw errors.notFound('Subscription', id);
    if (principal.kind === 'user') await elevate(trx); // checked above: one's own subscription
    const sub = await this.lock(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('The subscription is already canceled', { status: sub.status });
    const now = this.now();
    if (atPeriodEnd) {
      await trx.updateTable('subscriptions').set({ cancel_at_period_end: true, canceled_at: now }).where('id', '=', id).execute();
    } else {
      await this.end(trx, sub, now, 'subscription canceled');
    }
    return this.get(trx, id);
  }

  /** Payment confirmed (or the service says so): trialing / past_due → active. */
  async activate(trx: Executor, id: string) {
    const sub = await this.lock(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('A canceled subscription cannot be activated', { status: sub.status });
    await trx.updateTable('subscriptions').set({ status: 'active' }).where('id', '=', id).execute();
    await this.openCycles(trx, id, this.now());
    return this.get(trx, id);
  }

  async markPastDue(trx: Executor, id: string) {
    const sub = await this.lock(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('A canceled subscription cannot become past_due', { status: sub.status });
    await trx.updateTable('subscriptions').set({ status: 'past_due' }).where('id', '=', id).execute();
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
    const sub = await this.lock(trx, id);
    if (sub.status === 'canceled') throw errors.invalidState('A canceled subscription cannot change plan', { status: sub.status });
    const plan = await this.catalog.requirePlan(trx, planId);
    if (!plan.is_active) throw errors.invalidState(`Plan ${plan.id} is not active`, { plan_id: plan.id });
    // A provider's subscription is priced by the provider; the service must pick an offered interval.
    if (!sub.provider) assertOffered(plan, interval ?? sub.billing_interval);
    const now = this.now();
    await this.expireOpenAllowances(trx, sub, now, `plan changed from ${sub.plan_id} to ${plan.id}`);
    // The service chose this plan: renewals no longer depend on it staying free.
    const set: Record<string, unknown> = { plan_id: plan.id, self_service: false };
    if (interval && interval !== sub.billing_interval) {
      await this.closePeriod(trx, sub, now);
      Object.assign(set, {
        billing_interval: interval,
        current_period_start: now,
        current_period_end: addMonths(now, monthsOf(interval)),
        anchor_at: now,
      });
    }
    await trx.updateTable('subscriptions').set(set).where('id', '=', id).execute();
    await this.openCycles(trx, id, now, { prorate: true });
    return this.get(trx, id);
  }

  /**
   * A provider's state → the subscription (created on first sight). A paid period that starts
   * after the current one closes it and opens the new one, granting its allowances once.
   */
  async syncProviderSubscription(trx: Executor, input: ProviderSubscriptionSync): Promise<{ subscriptionId: string | null }> {
    let planId = input.planId;
    let interval = input.interval;
    if (!planId && input.providerPriceId) {
      const price = await this.catalog.planByProviderPrice(trx, input.provider, input.providerPriceId);
      if (price) {
        planId = price.plan_id;
        interval ??= price.billing_interval as Interval;
      }
    }
    const existing = await trx
      .selectFrom('subscriptions')
      .select('id')
      .where('provider', '=', input.provider)
      .where('provider_subscription_id', '=', input.providerSubscriptionId)
      .forUpdate()
      .executeTakeFirst();
    const now = this.now();
    if (!existing) {
      // A subscription whose price buys no plan (a recurring credit package) has nothing to sync.
      if (!planId) return { subscriptionId: null };
      const plan = await this.catalog.requirePlan(trx, planId);
      // A provider subscription replaces the user's live primary one (e.g. free → paid).
      const live = await trx
        .selectFrom('subscriptions')
        .select('id')
        .where('user_id', '=', input.userId)
        .where('is_primary', '=', true)
        .where('status', '<>', 'canceled')
        .forUpdate()
        .executeTakeFirst();
      if (live) await this.end(trx, await this.lock(trx, live.id), now, `replaced by ${input.provider} subscription`);
      const start = input.currentPeriodStart ?? now;
      const int: Interval = interval ?? 'monthly';
      const id = newId('subscription');
      const status = input.status === 'canceled' ? 'active' : input.status;
      await trx
        .insertInto('subscriptions')
        .values({
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
        })
        .execute();
      if (status === 'trialing' || status === 'active') await this.openCycles(trx, id, now);
      if (input.status === 'canceled') await this.end(trx, await this.lock(trx, id), input.canceledAt ?? now, 'canceled at provider');
      return { subscriptionId: id };
    }

    let sub = await this.lock(trx, existing.id);
    if (sub.status === 'canceled') return { subscriptionId: sub.id }; // a late event never revives it
    if (planId && planId !== sub.plan_id) {
      await this.changePlan(trx, sub.id, planId);
      sub = await this.lock(trx, sub.id);
    }
    if (input.status === 'canceled') {
      await this.end(trx, sub, input.canceledAt ?? now, 'canceled at provider');
      return { subscriptionId: sub.id };
    }
    if (input.periodPaid && input.currentPeriodStart && input.currentPeriodStart > sub.current_period_start) {
      await this.closePeriod(trx, sub, input.currentPeriodStart);
      const end = input.currentPeriodEnd ?? addMonths(input.currentPeriodStart, monthsOf(sub.billing_interval));
      await trx
        .updateTable('subscriptions')
        .set({ current_period_start: input.currentPeriodStart, current_period_end: end })
        .where('id', '=', sub.id)
        .execute();
    }
    await trx
      .updateTable('subscriptions')
      .set({
        status: input.periodPaid && input.status !== 'past_due' ? 'active' : input.status,
        cancel_at_period_end: input.cancelAtPeriodEnd,
        provider_customer_id: input.providerCustomerId ?? undefined,
        trial_end: input.trialEnd ?? undefined,
      })
      .where('id', '=', sub.id)
      .execute();
    const after = await this.lock(trx, sub.id);
    if (after.status === 'active' || after.status === 'trialing') await this.openCycles(trx, sub.id, now);
    return { subscriptionId: sub.id };
  }

  // ---- the scheduler's part ------------------------------------------------------------------

  /**
   * Everything due at `at`: trials that end, periods that end (renew, cancel or go past_due),
   * allowance windows that open. Each subscription in its own short transaction, claimed with
   * SKIP LOCKED so several runners never work on the same one. Idempotent: run it twice, same state.
   */
  async runDue(at: Date, limit = 500): Promise<{ processed: number; errors: { subscription_id: string; error: string }[] }> {
    let processed = 0;
    const failures: { subscription_id: string; error: string }[] = [];
    for (const { id } of await this.due(at, limit)) {
      try {
        if (await this.advanceOne(id, at)) processed++;
      } catch (err) {
        failures.push({ subscription_id: id, error: (err as Error).message });
      } finally {
        this.invalidations?.anythingChanged();
      }
    }
    return { processed, errors: failures };
  }

  /**
   * The server's way: one background job per due subscription and due instant (the dedupe key
   * makes a tick that repeats itself enqueue nothing new), run by the queue's workers with their
   * attempts and backoff. Returns how many were enqueued.
   */
  async enqueueDue(queue: QueueService, at: Date = this.now(), limit = 500): Promise<number> {
    const due = await this.due(at, limit);
    if (due.length === 0) return 0;
    await this.database.db.transaction().execute(async (trx) => {
      for (const d of due) {
        await queue.enqueue(trx, {
          type: BILLING_ADVANCE,
          input: { subscription_id: d.id },
          dedupeKey: `${BILLING_ADVANCE}:${d.id}:${d.due_at.toISOString()}`,
          maxAttempts: 10,
        });
      }
    });
    return due.length;
  }

  /** Registers the queue handler that advances one subscription (at the worker's `now`). */
  registerWith(queue: QueueService): void {
    queue.register(BILLING_ADVANCE, async (job, ctx) => {
      const id = String((job.input as { subscription_id?: unknown }).subscription_id);
      return { advanced: await this.advanceOne(id, ctx.now) };
    });
  }

  private async due(at: Date, limit: number): Promise<{ id: string; due_at: Date }[]> {
    const rows = await this.database.db
      .selectFrom('subscriptions')
      .select(['id', 'current_period_end', 'cycles_due_at', 'trial_end', 'status'])
      .where('status', '<>', 'canceled')
      .where((eb) =>
        eb.or([
          eb('current_period_end', '<=', at),
          eb('cycles_due_at', '<=', at),
          eb.and([eb('status', '=', 'trialing'), eb('trial_end', '<=', at)]),
        ]),
      )
      .orderBy('current_period_end')
      .limit(limit)
      .execute();
    return rows.map((r) => {
      const candidates = [r.current_period_end, r.cycles_due_at, r.status === 'trialing' ? r.trial_end : null]
        .filter((d): d is Date => d !== null && d <= at)
        .map((d) => d.getTime());
      return { id: r.id, due_at: new Date(Math.min(...candidates)) };
    });
  }

  /** One subscription, in its own transaction, claimed with SKIP LOCKED (false: another runner has it). */
  private async advanceOne(id: string, at: Date): Promise<boolean> {
    return this.database.db.transaction().execute(async (trx) => {
      const row = await sql<{ id: string }>`select id from ${sql.table(`${this.database.schema}.subscriptions`)}
        where id = ${id} for update skip locked`.execute(trx);
      if (row.rows.length === 0) return false;
      await this.advance(trx, id, at);
      return true;
    });
  }

  /** Brings one (locked) subscription up to `at`, period by period. */
  private async advance(trx: Executor, id: string, at: Date): Promise<void> {
    for (let guard = 0; guard < 1000; guard++) {
      const sub = await this.lock(trx, id);
      if (sub.status === 'canceled') return;
      if (sub.status === 'trialing' && sub.trial_end && sub.trial_end <= at) {
        // A trial of a free plan simply continues; a paid one needs its payment (activate / provider).
        const plan = await this.catalog.requirePlan(trx, sub.plan_id);
        // An interval the plan does not price (null) is not free.
        const price = priceOf(plan, sub.billing_interval);
        await trx
          .updateTable('subscriptions')
          .set({ status: price === 0 ? 'active' : sub.provider ? 'trialing' : 'past_due' })
          .where('id', '=', id)
          .execute();
        if (price === 0 || !sub.provider) continue;
      }
      if (sub.current_period_end <= at) {
        const end = sub.current_period_end;
        if (sub.cancel_at_period_end || sub.status === 'past_due') {
          await this.end(trx, sub, end, sub.cancel_at_period_end ? 'canceled at period end' : 'unpaid at period end');
          return;
        }
        if (!sub.provider) {
          // Never renewed for free: a user's own subscription only while its plan stays free, any
          // other only on an interval the plan offers (one made before 0008 may not be).
          const price = priceOf(await this.catalog.requirePlan(trx, sub.plan_id), sub.billing_interval);
          if (sub.self_service ? price !== 0 : price === null) {
            await this.end(trx, sub, end, price === null ? 'the plan does not offer this interval' : 'the plan is no longer free');
            return;
          }
        }
        if (sub.provider) {
          // The provider renews (a paid invoice arrives through payments); without one, past_due.
          if (at.getTime() - end.getTime() >= PROVIDER_GRACE_MS) {
            await trx.updateTable('subscriptions').set({ status: 'past_due' }).where('id', '=', id).execute();
          }
          await this.openCycles(trx, id, at);
          return;
        }
        await this.closePeriod(trx, sub, end);
        const months = monthsOf(sub.billing_interval);
        const next = windowAt(sub.anchor_at, months, end);
        await trx
          .updateTable('subscriptions')
          .set({ current_period_start: next.start, current_period_end: next.end })
          .where('id', '=', id)
          .execute();
        await this.openCycles(trx, id, next.start);
        continue;
      }
      await this.openCycles(trx, id, at);
      return;
    }
  }

  /**
   * Opens the allowance windows that contain `at` (and lie in the current period) and grants
   * them; records when the next one opens. Proration (plan changes) scales each by the time left.
   */
  async openCycles(trx: Executor, id: string, at: Date, opts: { prorate?: boolean } = {}): Promise<void> {
    const sub = await this.lock(trx, id);
    if (sub.status !== 'active' && sub.status !== 'trialing') {
      await trx.updateTable('subscriptions').set({ cycles_due_at: null }).where('id', '=', id).execute();
      return;
    }
    const plan = await this.catalog.requirePlan(trx, sub.plan_id);
    let nextDue: Date | null = null;
    for (const allowance of plan.allowances) {
      const w = allowanceWindowAt(sub.anchor_at, allowance.window as AllowanceWindow, at);
      if (w.start >= sub.current_period_end) continue;
      if (!nextDue || w.end < nextDue) nextDue = w.end;
      // Once per owner: time already covered by this user's windows of the same plan, class and
      // window kind (any subscription of theirs, cut short or not) is not granted again. Prorated
      // (plan changes) from `at`; the rest of the window, pro rata.
      const covered = await trx
        .selectFrom('allowance_cycles')
        .select(['cycle_start', 'cycle_end'])
        .where('user_id', '=', sub.user_id)
        .where('plan_id', '=', plan.id)
        .where('class', '=', allowance.class)
        .where('window', '=', allowance.window)
        .where('cycle_end', '>', w.start)
        .where('cycle_start', '<', w.end)
        .execute();
      const from = opts.prorate && at > w.start ? at : w.start;
      const fresh = uncoveredMs(from, w.end, covered.map((c) => [c.cycle_start, c.cycle_end]));
      const length = w.end.getTime() - w.start.getTime();
      const amount = fresh === length ? allowance.amount : Number((BigInt(allowance.amount) * BigInt(fresh)) / BigInt(length));
      const inserted = await trx
        .insertInto('allowance_cycles')
        .values({
          subscription_id: id,
          user_id: sub.user_id,
          plan_id: plan.id,
          class: allowance.class,
          window: allowance.window,
          cycle_start: w.start,
          cycle_end: w.end,
          amount,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('cycle_start')
        .executeTakeFirst();
      if (!inserted || amount <= 0 || w.end <= at) continue;
      const [result] = await this.credits.executeIn(trx, { userId: sub.user_id }, [
        {
          kind: 'grant',
          requestId: `allowance:${id}`,
          idem: null,
          amount,
          reason: `${plan.name} ${allowance.class} allowance (${allowance.window})`,
          class: allowance.class,
          source: 'allowance',
          expiresAt: w.end,
          priority: 0,
          rolloverUntil: this.rolloverUntil(sub, allowance.window as AllowanceWindow, allowance.rollover_policy, w),
          metadata: { subscription_id: id, plan_id: plan.id, window: allowance.window, cycle_start: w.start.toISOString() },
        },
      ]);
      if (!result || result.status >= 300) {
        const body = result?.body as { error?: { message?: string } } | undefined;
        throw new Error(`allowance grant refused: ${body?.error?.message ?? 'unknown'}`);
      }
      const grantId = (result.body as { transaction: { grant_id: string | null } }).transaction.grant_id;
      await trx
        .updateTable('allowance_cycles')
        .set({ grant_id: grantId })
        .where('subscription_id', '=', id)
        .where('plan_id', '=', plan.id)
        .where('class', '=', allowance.class)
        .where('window', '=', allowance.window)
        .where('cycle_start', '=', w.start)
        .execute();
    }
    await trx.updateTable('subscriptions').set({ cycles_due_at: nextDue }).where('id', '=', id).execute();
  }

  /** 1_cycle: until the next window ends; annual: until the subscription year ends. */
  private rolloverUntil(sub: SubRow, window: AllowanceWindow, policy: string, w: { start: Date; end: Date }): Date | null {
    if (policy === '1_cycle') return allowanceWindowAt(sub.anchor_at, window, w.end).end;
    if (policy === 'annual') {
      const yearEnd = windowAt(sub.anchor_at, 12, w.start).end;
      return yearEnd > w.end ? yearEnd : null;
    }
    return null;
  }

  /**
   * Closes a period: per-metric summaries from its counters, its overage charges invoiced, and
   * the plan's usage bonus. Once only: the summaries' unique key and the charges' status say so.
   */
  private async closePeriod(trx: Executor, sub: SubRow, end: Date): Promise<void> {
    const start = sub.current_period_start;
    const plan = await this.catalog.requirePlan(trx, sub.plan_id);
    const counters = await trx
      .selectFrom('usage_counters')
      .select(['metric', 'quantity', 'credits', 'overage'])
      .where('user_id', '=', sub.user_id)
      .where('window', '=', 'period')
      .where('window_start', '=', start)
      .execute();
    const charges = await trx
      .selectFrom('overage_charges')
      .selectAll()
      .where('subscription_id', '=', sub.id)
      .where('period_start', '=', start)
      .execute();
    for (const c of counters) {
      const charge = charges.find((x) => x.metric === c.metric);
      const summaryId = newId('usageSummary');
      const inserted = await trx
        .insertInto('usage_summaries')
        .values({
          id: summaryId,
          subscription_id: sub.id,
          user_id: sub.user_id,
          metric: c.metric,
          period_start: start,
          period_end: end,
          quantity: c.quantity,
          credits: c.credits,
          overage: c.overage,
          overage_amount: charge ? Number(charge.amount) : 0,
          currency: charge?.currency ?? plan.currency,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (inserted && charge) {
        await trx
          .updateTable('overage_charges')
          .set({ usage_summary_id: summaryId, status: 'invoiced', invoiced_at: end })
          .where('id', '=', charge.id)
          .where('status', '=', 'pending')
          .execute();
      }
      // Usage bonus: a share of the credits used this period, granted for the next one.
      if (inserted && plan.usage_bonus_rate > 0 && Number(c.credits) > 0) {
        const bonus = Math.floor(Number(c.credits) * plan.usage_bonus_rate);
        if (bonus > 0) {
          const nextEnd = addMonths(end, monthsOf(sub.billing_interval));
          const [r] = await this.credits.executeIn(trx, { userId: sub.user_id }, [
            {
              kind: 'grant',
              requestId: `usage-bonus:${sub.id}`,
              idem: null,
              amount: bonus,
              reason: `usage bonus on ${c.metric} (${plan.usage_bonus_rate} × ${c.credits})`,
              class: 'Usage',
              source: 'usage_bonus',
              expiresAt: nextEnd > this.now() ? nextEnd : null,
              priority: 0,
              metadata: { subscription_id: sub.id, metric: c.metric, period_start: start.toISOString() },
            },
          ]);
          if (r && r.status >= 300 && r.status !== 422) throw new Error('usage bonus grant failed');
        }
      }
    }
  }

  /** Ends a subscription at `at`: closes its period, ends its open allowances (no rollover). */
  private async end(trx: Executor, sub: SubRow, at: Date, reason: string): Promise<void> {
    await this.closePeriod(trx, sub, at < sub.current_period_end ? at : sub.current_period_end);
    await this.expireOpenAllowances(trx, sub, at, reason);
    await trx
      .updateTable('subscriptions')
      .set({ status: 'canceled', ended_at: at, canceled_at: sql`coalesce(canceled_at, ${at})`, cycles_due_at: null })
      .where('id', '=', sub.id)
      .execute();
  }

  /**
   * Ends the allowances of the windows still open at `at` (those ending exactly then included).
   * Their rollover is cleared first — an ended plan's remainder expires, it does not roll over —
   * which changes no balance, only what the ledger will do with these grants at expiry.
   */
  private async expireOpenAllowances(trx: Executor, sub: SubRow, at: Date, reason: string): Promise<void> {
    const open = await trx
      .selectFrom('allowance_cycles')
      .select('grant_id')
      .where('subscription_id', '=', sub.id)
      .where('cycle_end', '>=', at)
      .where('grant_id', 'is not', null)
      .execute();
    const grantIds = open.map((c) => c.grant_id!).filter(Boolean);
    if (grantIds.length > 0) {
      // The windows end now, whatever is held: credits backing an open hold stay until the hold
      // settles (the ledger never expires held credits), then expire like any past-due grant —
      // they do not live on to the window's old end.
      await trx
        .updateTable('credit_grants')
        .set({ rollover_until: null, expires_at: sql`least(coalesce(expires_at, ${at}), ${at})` })
        .where('id', 'in', grantIds)
        .where('remaining', '>', 0)
        .execute();
      // A chained batch may carry this account's state from before this write: a new version makes it reload.
      await trx.updateTable('credit_accounts').set({ version: newAccountVersion() }).where('user_id', '=', sub.user_id).execute();
    }
    await this.credits.executeIn(trx, { userId: sub.user_id }, [{ kind: 'expire', requestId: `end:${sub.id}`, idem: null, grantIds, reason }]);
  }

  private async lock(trx: Executor, id: string): Promise<SubRow> {
    const row = await trx
      .selectFrom('subscriptions')
      .select([
        'id', 'user_id', 'plan_id', 'status', 'billing_interval', 'current_period_start', 'current_period_end', 'anchor_at',
        'trial_end', 'cancel_at_period_end', 'provider', 'self_service',
      ])
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw errors.notFound('Subscription', id);
    // Then the user's account: every billing writer takes subscription → account → billing rows,
    // and usage events take account → billing rows, so the two can never deadlock.
    await sql`select 1 from ${sql.table(`${this.database.schema}.credit_accounts`)} where user_id = ${row.user_id} for update`.execute(trx);
    return row as SubRow;
  }

  private async assertNoLivePrimary(trx: Executor, userId: string): Promise<void> {
    const live = await trx
      .selectFrom('subscriptions')
      .select(['id', 'status'])
      .where('user_id', '=', userId)
      .where('is_primary', '=', true)
      .where('status', '<>', 'canceled')
      .executeTakeFirst();
    if (live) {
      throw errors.conflict(`User ${userId} already has subscription ${live.id}; change its plan instead`, { subscription_id: live.id });
    }
  }
}

/** How much of [from, to) the intervals leave uncovered, in milliseconds. */
function uncoveredMs(from: Date, to: Date, intervals: [Date, Date][]): number {
  let cursor = from.getTime();
  const end = to.getTime();
  let free = 0;
  for (const [s, e] of intervals.map(([s, e]) => [s.getTime(), e.getTime()] as const).sort((a, b) => a[0] - b[0])) {
    if (e <= cursor) continue;
    if (s >= end) break;
    if (s > cursor) free += s - cursor;
    cursor = Math.max(cursor, e);
    if (cursor >= end) break;
  }
  return free + Math.max(0, end - cursor);
}

/** The service acts on every subscription; a user only on their own. */
function owns(principal: Principal, userId: string): boolean {
  return principal.kind === 'service' || (principal.kind === 'user' && principal.userId === userId);
}
