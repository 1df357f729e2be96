import type { Executor } from '../../db/database.js';
import type { SubscriptionEvents } from './billing.subscriptions.events.js';
import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import type { Ledger } from '../credits/credits.port.js';
import type { CatalogService } from './billing.catalog.service.js';
import { addMonths, allowanceWindowAt, type AllowanceWindow, monthsOf, windowAt } from './billing.periods.js';
import {
  allowanceCycleGrants,
  allowanceCycleGrantsOfPeriod,
  allowanceCycleInsert,
  allowanceCycleOpenGrants,
  allowanceCyclesOverlapping,
  allowanceCycleSetGrant,
  creditAccountLockOfUser,
  overageChargeInvoice,
  overageChargesOfPeriod,
  type SubscriptionState,
  subscriptionLock,
  subscriptionMarkEnded,
  subscriptionUpdate,
  usageCountersOfPeriod,
  usageSummaryInsert,
  usageTransactionsOfPeriod,
} from './billing.subscriptions.repository.js';

/**
 * Locks a subscription for a change, then its user's account: every billing writer takes
 * subscription → account → billing rows, and usage events take account → billing rows, so the two
 * can never deadlock.
 */
export async function lockSubscription(trx: Executor, id: string): Promise<SubscriptionState> {
  const sub = await subscriptionLock(trx, id);
  if (!sub) throw errors.notFound('Subscription', id);
  await creditAccountLockOfUser(trx, sub.user_id);
  return sub;
}

/**
 * What a subscription's periods and allowance windows do to the ledger: opening a window grants
 * its allowance, closing a period writes its summaries and grants the usage bonus, ending a
 * subscription expires its open allowances. Every call into the credits ledger that subscriptions
 * make is in this file.
 */
export class SubscriptionCycles {
  constructor(
    private readonly catalog: CatalogService,
    private readonly credits: Ledger,
    private readonly now: () => Date,
    private readonly events: SubscriptionEvents,
  ) {}

  /**
   * Opens the allowance windows that contain `at` (and lie in the current period) and grants
   * them; records when the next one opens. Proration (plan changes) scales each by the time left.
   */
  async open(trx: Executor, id: string, at: Date, opts: { prorate?: boolean } = {}): Promise<void> {
    const sub = await lockSubscription(trx, id);
    if (sub.status !== 'active' && sub.status !== 'trialing') {
      await subscriptionUpdate(trx, id, { cycles_due_at: null });
      return;
    }
    const plan = await this.catalog.requirePlan(trx, sub.plan_id);
    let nextDue: Date | null = null;
    for (const allowance of plan.allowances) {
      const w = allowanceWindowAt(sub.anchor_at, allowance.window, at);
      if (w.start >= sub.current_period_end) continue;
      if (!nextDue || w.end < nextDue) nextDue = w.end;
      // Once per owner: time already covered by this user's windows of the same plan, class and
      // window kind (any subscription of theirs, cut short or not) is not granted again. Prorated
      // (plan changes) from `at`; the rest of the window, pro rata.
      const covered = await allowanceCyclesOverlapping(
        trx,
        { userId: sub.user_id, planId: plan.id, class: allowance.class, window: allowance.window },
        w.start,
        w.end,
      );
      const from = opts.prorate && at > w.start ? at : w.start;
      const fresh = uncoveredMs(from, w.end, covered.map((c) => [c.cycle_start, c.cycle_end]));
      const length = w.end.getTime() - w.start.getTime();
      const amount = fresh === length ? allowance.amount : Number((BigInt(allowance.amount) * BigInt(fresh)) / BigInt(length));
      const inserted = await allowanceCycleInsert(trx, {
        subscription_id: id,
        user_id: sub.user_id,
        plan_id: plan.id,
        class: allowance.class,
        window: allowance.window,
        cycle_start: w.start,
        cycle_end: w.end,
        amount,
      });
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
      if (!result || !result.ok) throw new Error(`allowance grant refused: ${result && !result.ok ? result.error.message : 'unknown'}`);
      const grantId = (result.value as { transaction: { grant_id: string | null } }).transaction.grant_id;
      await allowanceCycleSetGrant(
        trx,
        { subscriptionId: id, planId: plan.id, class: allowance.class, window: allowance.window, cycleStart: w.start },
        grantId,
      );
    }
    await subscriptionUpdate(trx, id, { cycles_due_at: nextDue });
  }

  /**
   * Closes a period: per-metric summaries from its counters, its overage charges invoiced, and
   * the plan's usage bonus. Once only: the summaries' unique key and the charges' status say so.
   */
  async closePeriod(trx: Executor, sub: SubscriptionState, end: Date): Promise<void> {
    const start = sub.current_period_start;
    const plan = await this.catalog.requirePlan(trx, sub.plan_id);
    const counters = await usageCountersOfPeriod(trx, sub.user_id, start);
    const charges = await overageChargesOfPeriod(trx, sub.id, start);
    for (const c of counters) {
      const charge = charges.find((x) => x.metric === c.metric);
      const summaryId = newId('usageSummary');
      const inserted = await usageSummaryInsert(trx, {
        id: summaryId,
        subscription_id: sub.id,
        user_id: sub.user_id,
        metric: c.metric,
        period_start: start,
        period_end: end,
        quantity: c.quantity,
        credits: c.credits,
        overage: c.overage,
        overage_amount: charge ? charge.amount : 0,
        currency: charge?.currency ?? plan.currency,
      });
      if (inserted && charge) await overageChargeInvoice(trx, charge.id, summaryId, end);
      // Usage bonus: a share of the credits used this period, granted for the next one. Used means
      // kept: what the app refunded of the period's usage debits earns nothing (review attack 4:
      // refunded usage minted the bonus every period).
      if (inserted && plan.usage_bonus_rate > 0 && c.credits > 0) {
        const refunded = await this.credits.refundedOf(trx, { userId: sub.user_id }, await usageTransactionsOfPeriod(trx, sub.id, c.metric, start, end));
        const bonus = Math.floor(Math.max(0, c.credits - refunded) * plan.usage_bonus_rate);
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
          // A full balance (the cap) is no failure here: the bonus is simply not needed.
          if (r && !r.ok && r.error.code !== 'balance_cap_exceeded') throw new Error('usage bonus grant failed');
        }
      }
    }
  }

  /** Ends a subscription at `at`: closes its period, ends its open allowances (no rollover). */
  async end(trx: Executor, sub: SubscriptionState, at: Date, reason: string): Promise<void> {
    await this.closePeriod(trx, sub, at < sub.current_period_end ? at : sub.current_period_end);
    await this.expireOpenAllowances(trx, sub, at, reason);
    await subscriptionMarkEnded(trx, sub.id, at);
    await this.events.tell(trx, 'subscription.canceled', sub.id);
  }

  /**
   * Ends the allowances of the windows still open at `at` (those ending exactly then included).
   * Their rollover is cleared first — an ended plan's remainder expires, it does not roll over —
   * which changes no balance, only what the ledger will do with these grants at expiry.
   */
  async expireOpenAllowances(trx: Executor, sub: SubscriptionState, at: Date, reason: string): Promise<void> {
    const grantIds = await allowanceCycleOpenGrants(trx, sub.id, at);
    if (grantIds.length > 0) {
      // The windows end now, whatever is held: credits backing an open hold stay until the hold
      // settles (the ledger never expires held credits), then expire like any past-due grant —
      // they do not live on to the window's old end.
      await this.credits.endGrantsAt(trx, { userId: sub.user_id }, grantIds, at);
    }
    await this.credits.executeIn(trx, { userId: sub.user_id }, [{ kind: 'expire', requestId: `end:${sub.id}`, idem: null, grantIds, reason }]);
  }

  /**
   * A subscription whose payment was taken back (payments' refund or dispute, after `end`): the
   * rollover buckets its windows left end now too (the open windows already did), and the answer
   * is what its allowances gave out (docs/ledger.md `grantsUsed`), for payments to claw back.
   * Credits backing an open hold stay until the hold settles, as in `expireOpenAllowances`, and
   * count as used: a capture may still spend them after the plan is gone, and nothing would take
   * that spend back then. (Released instead, they expire: the buyer who took the payment back has
   * paid for them. Conservative, and only for what an open hold kept.)
   */
  async revoke(trx: Executor, sub: SubscriptionState, at: Date, reason: string): Promise<number> {
    return this.takeBack(trx, sub, await allowanceCycleGrants(trx, sub.id), at, reason);
  }

  /**
   * A subscription invoice taken back (payments' full refund or dispute): the windows of the
   * period it paid end now, with the rollover buckets they left, and the answer is what they gave
   * out (held counted as used, as in `revoke`). Windows of other periods are untouched, and so is
   * the subscription: whether it goes on is the provider's to say (its cancel or past_due events).
   * The period's windows not opened yet are recorded as granted with nothing (a 0 allowance cycle),
   * so the scheduler never opens them: that period was not paid for after all.
   */
  async revokePeriod(trx: Executor, sub: SubscriptionState, period: { start: Date; end: Date | null }, at: Date, reason: string): Promise<number> {
    if (period.end) await this.forgoWindows(trx, sub, period.start, period.end);
    return this.takeBack(trx, sub, await allowanceCycleGrantsOfPeriod(trx, sub.id, period), at, reason);
  }

  /** Ends the named allowance grants and their live rollover buckets at `at`; what they gave out. */
  private async takeBack(trx: Executor, sub: SubscriptionState, grantIds: string[], at: Date, reason: string): Promise<number> {
    if (grantIds.length === 0) return 0;
    const owner = { userId: sub.user_id };
    const { liveRollovers } = await this.credits.grantsUsed(trx, owner, grantIds);
    // Windows already ended (a canceled plan's, a past period's) keep their earlier end (least):
    // this ends only what is still open, and clears its rollover.
    const ending = [...grantIds, ...liveRollovers];
    await this.credits.endGrantsAt(trx, owner, ending, at);
    // The batch's own expiry (at its start, by what is free) leaves in the ended grants only what
    // open holds keep.
    await this.credits.executeIn(trx, owner, [{ kind: 'expire', requestId: `revoke:${sub.id}`, idem: null, grantIds: ending, reason }]);
    const { used, held } = await this.credits.grantsUsed(trx, owner, grantIds);
    return used + held;
  }

  /** Records every window of the current plan that starts in [start, end) and is not yet open, as 0. */
  private async forgoWindows(trx: Executor, sub: SubscriptionState, start: Date, end: Date): Promise<void> {
    const plan = await this.catalog.requirePlan(trx, sub.plan_id);
    for (const allowance of plan.allowances) {
      const window = allowance.window as AllowanceWindow;
      // Bounded: a yearly period has at most 366 daily windows.
      for (let w = allowanceWindowAt(sub.anchor_at, window, start), n = 0; w.start < end && n < 400; w = allowanceWindowAt(sub.anchor_at, window, w.end), n++) {
        if (w.start < start) continue;
        await allowanceCycleInsert(trx, { subscription_id: sub.id, user_id: sub.user_id, plan_id: plan.id, class: allowance.class, window: allowance.window, cycle_start: w.start, cycle_end: w.end, amount: 0 });
      }
    }
  }

  /** 1_cycle: until the next window ends; annual: until the subscription year ends. */
  private rolloverUntil(sub: SubscriptionState, window: AllowanceWindow, policy: string, w: { start: Date; end: Date }): Date | null {
    if (policy === '1_cycle') return allowanceWindowAt(sub.anchor_at, window, w.end).end;
    if (policy === 'annual') {
      const yearEnd = windowAt(sub.anchor_at, 12, w.start).end;
      return yearEnd > w.end ? yearEnd : null;
    }
    return null;
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
