import { type Insertable, sql, type Updateable } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { AllowanceCycles, Subscriptions, UsageSummaries } from '../../db/database.types.js';
import { INTERVALS, oneOf, type OverageChargeRow, SUBSCRIPTION_STATUSES, type SubscriptionStatus, type SubscriptionWithPlanRow } from './billing.js';
import type { Interval } from './billing.periods.js';

/**
 * Subscriptions' SQL: the subscription rows, their allowance windows (`allowance_cycles`), and
 * what closing a period writes (usage summaries, overage charges invoiced). Executor first; the
 * services compose these inside one transaction, in the lock order docs/billing.md gives.
 */

/** What the rules read of a subscription they are about to change (it is locked). */
export interface SubscriptionState {
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
  trial_ending_told_at: Date | null;
}

// ---- subscriptions -------------------------------------------------------------------------

/** Whether the user exists (as the caller sees users). */
export async function userExists(db: Executor, userId: string): Promise<boolean> {
  return (await db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst()) !== undefined;
}

/** Locks a subscription row (FOR UPDATE) and reads its state; undefined: no such subscription. */
export async function subscriptionLock(db: Executor, id: string): Promise<SubscriptionState | undefined> {
  const row = await db
    .selectFrom('subscriptions')
    .select([
      'id', 'user_id', 'plan_id', 'status', 'billing_interval', 'current_period_start', 'current_period_end', 'anchor_at',
      'trial_end', 'cancel_at_period_end', 'provider', 'self_service', 'trial_ending_told_at',
    ])
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return row && { ...row, status: oneOf(SUBSCRIPTION_STATUSES, row.status), billing_interval: oneOf(INTERVALS, row.billing_interval) };
}

/** Claims a subscription for the scheduler: locked, or false when another runner holds it (SKIP LOCKED). */
export async function subscriptionClaim(db: Executor, id: string): Promise<boolean> {
  const row = await db.selectFrom('subscriptions').select('id').where('id', '=', id).forUpdate().skipLocked().executeTakeFirst();
  return row !== undefined;
}

/** Locks a user's credit account (taken after the subscription: see docs/billing.md, "Locking and batching"). */
export async function creditAccountLockOfUser(db: Executor, userId: string): Promise<void> {
  await db.selectFrom('credit_accounts').select('id').where('user_id', '=', userId).forUpdate().execute();
}

/** A subscription with its plan's pay_as_you_go (for the API shape, subscriptionOf). */
export async function subscriptionFind(db: Executor, id: string): Promise<SubscriptionWithPlanRow | undefined> {
  return db
    .selectFrom('subscriptions as s')
    .innerJoin('plans as p', 'p.id', 's.plan_id')
    .selectAll('s')
    .select('p.pay_as_you_go as plan_payg')
    .where('s.id', '=', id)
    .executeTakeFirst();
}

/** A user's subscriptions, newest first (at most 200). */
export async function subscriptionListOfUser(db: Executor, userId: string): Promise<SubscriptionWithPlanRow[]> {
  return db
    .selectFrom('subscriptions as s')
    .innerJoin('plans as p', 'p.id', 's.plan_id')
    .selectAll('s')
    .select('p.pay_as_you_go as plan_payg')
    .where('s.user_id', '=', userId)
    .orderBy('s.created_at', 'desc')
    .orderBy('s.id', 'desc')
    .limit(200)
    .execute();
}

/** Who owns a subscription, read as the caller (row-level security hides others'). */
export async function subscriptionFindOwner(db: Executor, id: string) {
  return db.selectFrom('subscriptions').select('user_id').where('id', '=', id).executeTakeFirst();
}

/** The user's live (not canceled) primary subscription; `lock` takes it FOR UPDATE. */
export async function subscriptionFindLivePrimary(db: Executor, userId: string, opts: { lock?: boolean } = {}) {
  const q = db
    .selectFrom('subscriptions')
    .select(['id', 'status'])
    .where('user_id', '=', userId)
    .where('is_primary', '=', true)
    .where('status', '<>', 'canceled');
  return (opts.lock ? q.forUpdate() : q).executeTakeFirst();
}

/** A subscription of the user to the plan that had a trial. */
export async function subscriptionFindTrial(db: Executor, userId: string, planId: string) {
  return db
    .selectFrom('subscriptions')
    .select('id')
    .where('user_id', '=', userId)
    .where('plan_id', '=', planId)
    .where('trial_start', 'is not', null)
    .executeTakeFirst();
}

/** A provider's subscription, locked (FOR UPDATE). */
export async function subscriptionLockByProvider(db: Executor, provider: string, providerSubscriptionId: string) {
  return db
    .selectFrom('subscriptions')
    .select('id')
    .where('provider', '=', provider)
    .where('provider_subscription_id', '=', providerSubscriptionId)
    .forUpdate()
    .executeTakeFirst();
}

export async function subscriptionInsert(db: Executor, values: Insertable<Subscriptions>): Promise<void> {
  await db.insertInto('subscriptions').values(values).execute();
}

/** Sets the given columns (an undefined value leaves its column alone). */
export async function subscriptionUpdate(db: Executor, id: string, set: Updateable<Subscriptions>): Promise<void> {
  await db.updateTable('subscriptions').set(set).where('id', '=', id).execute();
}

/** Marks a subscription ended at `at` (canceled_at keeps an earlier cancel's time). */
export async function subscriptionMarkEnded(db: Executor, id: string, at: Date): Promise<void> {
  await db
    .updateTable('subscriptions')
    .set({ status: 'canceled', ended_at: at, canceled_at: sql<Date>`coalesce(canceled_at, ${at})`, cycles_due_at: null })
    .where('id', '=', id)
    .execute();
}

/** Subscriptions with something due at `at` (a period end, an allowance window, a trial end). */
export async function subscriptionsDue(db: Executor, at: Date, limit: number, trialNoticeMs: number) {
  return db
    .selectFrom('subscriptions')
    .select(['id', 'current_period_end', 'cycles_due_at', 'trial_end', 'status', 'trial_ending_told_at'])
    .where('status', '<>', 'canceled')
    .where((eb) =>
      eb.or([
        eb('current_period_end', '<=', at),
        eb('cycles_due_at', '<=', at),
        eb.and([eb('status', '=', 'trialing'), eb('trial_end', '<=', at)]),
        // A trial ending soon that has not told so yet (subscription.trial_ending).
        eb.and([eb('status', '=', 'trialing'), eb('trial_ending_told_at', 'is', null), eb('trial_end', '<=', new Date(at.getTime() + trialNoticeMs))]),
      ]),
    )
    .orderBy('current_period_end')
    .limit(limit)
    .execute();
}

// ---- allowance windows ---------------------------------------------------------------------

/** The user's windows of this plan, class and window kind that overlap [from, to), from any subscription. */
export async function allowanceCyclesOverlapping(
  db: Executor,
  key: { userId: string; planId: string; class: string; window: string },
  from: Date,
  to: Date,
) {
  return db
    .selectFrom('allowance_cycles')
    .select(['cycle_start', 'cycle_end'])
    .where('user_id', '=', key.userId)
    .where('plan_id', '=', key.planId)
    .where('class', '=', key.class)
    .where('window', '=', key.window)
    .where('cycle_end', '>', from)
    .where('cycle_start', '<', to)
    .execute();
}

/** Records a window; false when it was already there (its primary key makes each grant happen once). */
export async function allowanceCycleInsert(db: Executor, values: Insertable<AllowanceCycles>): Promise<boolean> {
  const inserted = await db
    .insertInto('allowance_cycles')
    .values(values)
    .onConflict((oc) => oc.doNothing())
    .returning('cycle_start')
    .executeTakeFirst();
  return inserted !== undefined;
}

export async function allowanceCycleSetGrant(
  db: Executor,
  key: { subscriptionId: string; planId: string; class: string; window: string; cycleStart: Date },
  grantId: string | null,
): Promise<void> {
  await db
    .updateTable('allowance_cycles')
    .set({ grant_id: grantId })
    .where('subscription_id', '=', key.subscriptionId)
    .where('plan_id', '=', key.planId)
    .where('class', '=', key.class)
    .where('window', '=', key.window)
    .where('cycle_start', '=', key.cycleStart)
    .execute();
}

/** The grants of every window a subscription ever opened. */
export async function allowanceCycleGrants(db: Executor, subscriptionId: string): Promise<string[]> {
  const rows = await db.selectFrom('allowance_cycles').select('grant_id').where('subscription_id', '=', subscriptionId).where('grant_id', 'is not', null).execute();
  return rows.flatMap((r) => (r.grant_id ? [r.grant_id] : []));
}

/**
 * The grants of a subscription's windows of one paid period: those that start in [start, end), or
 * with no end known, the windows open at `start`.
 */
export async function allowanceCycleGrantsOfPeriod(db: Executor, subscriptionId: string, period: { start: Date; end: Date | null }): Promise<string[]> {
  let q = db.selectFrom('allowance_cycles').select('grant_id').where('subscription_id', '=', subscriptionId).where('grant_id', 'is not', null);
  q = period.end ? q.where('cycle_start', '>=', period.start).where('cycle_start', '<', period.end) : q.where('cycle_start', '<=', period.start).where('cycle_end', '>', period.start);
  const rows = await q.execute();
  return rows.flatMap((r) => (r.grant_id ? [r.grant_id] : []));
}

/** The grants of a subscription's windows still open at `at` (those ending exactly then included). */
export async function allowanceCycleOpenGrants(db: Executor, subscriptionId: string, at: Date): Promise<string[]> {
  const rows = await db
    .selectFrom('allowance_cycles')
    .select('grant_id')
    .where('subscription_id', '=', subscriptionId)
    .where('cycle_end', '>=', at)
    .where('grant_id', 'is not', null)
    .execute();
  return rows.flatMap((r) => (r.grant_id ? [r.grant_id] : []));
}

// ---- closing a period ----------------------------------------------------------------------

/** A user's per-metric `period` counters of the period that started at `start`. */
export async function usageCountersOfPeriod(db: Executor, userId: string, start: Date) {
  return db
    .selectFrom('usage_counters')
    .select(['metric', 'quantity', 'credits', 'overage'])
    .where('user_id', '=', userId)
    .where('window', '=', 'period')
    .where('window_start', '=', start)
    .execute();
}

/** The ledger entries of a subscription's own usage events of one metric in a period (pool events have no subscription). */
export async function usageTransactionsOfPeriod(db: Executor, subscriptionId: string, metric: string, start: Date, end: Date): Promise<string[]> {
  const rows = await db
    .selectFrom('usage_events')
    .select('transaction_id')
    .where('subscription_id', '=', subscriptionId)
    .where('metric', '=', metric)
    .where('created_at', '>=', start)
    .where('created_at', '<', end)
    .where('transaction_id', 'is not', null)
    .execute();
  return rows.flatMap((r) => (r.transaction_id ? [r.transaction_id] : []));
}

export async function overageChargesOfPeriod(db: Executor, subscriptionId: string, start: Date): Promise<OverageChargeRow[]> {
  return db.selectFrom('overage_charges').selectAll().where('subscription_id', '=', subscriptionId).where('period_start', '=', start).execute();
}

/** Records a period's summary of a metric; false when it was already there (closing runs once). */
export async function usageSummaryInsert(db: Executor, values: Insertable<UsageSummaries>): Promise<boolean> {
  const inserted = await db.insertInto('usage_summaries').values(values).onConflict((oc) => oc.doNothing()).returning('id').executeTakeFirst();
  return inserted !== undefined;
}

/** A pending overage charge becomes invoiced, with its summary. */
export async function overageChargeInvoice(db: Executor, id: string, summaryId: string, at: Date): Promise<void> {
  await db
    .updateTable('overage_charges')
    .set({ usage_summary_id: summaryId, status: 'invoiced', invoiced_at: at })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .execute();
}
