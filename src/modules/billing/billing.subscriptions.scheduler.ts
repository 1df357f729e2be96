import type { Database, Executor } from '../../db/database.js';
import type { Invalidations } from '../../lib/invalidations.js';
import type { QueueService } from '../queue/queue.service.js';
import type { CatalogService } from './billing.catalog.service.js';
import { priceOf } from './billing.js';
import { monthsOf, windowAt } from './billing.periods.js';
import { lockSubscription, type SubscriptionCycles } from './billing.subscriptions.cycles.js';
import { type SubscriptionEvents, TRIAL_ENDING_NOTICE_MS } from './billing.subscriptions.events.js';
import { subscriptionClaim, subscriptionsDue, subscriptionUpdate } from './billing.subscriptions.repository.js';

/** One due subscription as `previewDue` found it would advance (or the error it would meet). */
export type DuePreview =
  | {
      subscription_id: string;
      user_id: string;
      status: { from: string; to: string };
      period_end: { from: string; to: string };
      ledger: { type: string; amount: number; reason: string | null }[];
    }
  | { subscription_id: string; error: string };

/** Thrown to roll a preview's transaction back; Skipped: another runner holds the subscription. */
class RolledBack extends Error {}
class Skipped extends Error {}

/** The background-queue job type that advances one subscription. */
export const BILLING_ADVANCE = 'billing.advance';

/** A provider-managed subscription whose period ended without a paid renewal turns past_due after this. */
const PROVIDER_GRACE_MS = 3 * 86_400_000;

/**
 * The scheduler's part of subscriptions: trials that end, periods that end (renew, cancel or go
 * past_due), allowance windows that open — each subscription in its own short transaction.
 */
export class SubscriptionScheduler {
  constructor(
    private readonly database: Database,
    private readonly catalog: CatalogService,
    private readonly cycles: SubscriptionCycles,
    private readonly events: SubscriptionEvents,
    /** Told after each subscription `runDue` advances (the scheduler and `tally billing run`). */
    private readonly invalidations?: Invalidations,
  ) {}

  /**
   * Everything due at `at`. Each subscription in its own short transaction, claimed with SKIP
   * LOCKED so several runners never work on the same one. Idempotent: run it twice, same state.
   */
  async runDue(at: Date, limit = 500): Promise<{ processed: number; ids: string[]; errors: { subscription_id: string; error: string }[] }> {
    const ids: string[] = [];
    const failures: { subscription_id: string; error: string }[] = [];
    for (const { id } of await this.due(at, limit)) {
      try {
        if (await this.advanceOne(id, at)) ids.push(id);
      } catch (err) {
        failures.push({ subscription_id: id, error: (err as Error).message });
      } finally {
        this.invalidations?.anythingChanged();
      }
    }
    return { processed: ids.length, ids, errors: failures };
  }

  /**
   * What `runDue(at)` would do, without doing it: each due subscription is advanced exactly as
   * runDue would, inside a transaction that is then rolled back, and reported (statuses, period
   * end, the ledger entries it would write). Nothing is kept and nobody is told.
   */
  async previewDue(at: Date, limit = 500): Promise<DuePreview[]> {
    const out: DuePreview[] = [];
    for (const { id } of await this.due(at, limit)) {
      try {
        await this.database.db.transaction().execute(async (trx) => {
          if (!(await subscriptionClaim(trx, id))) throw new Skipped();
          const before = await lockSubscription(trx, id);
          const account = `acc_u_${before.user_id}`;
          const seq = (await trx.selectFrom('credit_accounts').select('last_seq').where('id', '=', account).executeTakeFirst())?.last_seq ?? 0;
          await this.advance(trx, id, at);
          const after = await lockSubscription(trx, id);
          const entries = await trx
            .selectFrom('credit_ledger')
            .select(['type', 'amount', 'reason'])
            .where('account_id', '=', account)
            .where('seq', '>', seq)
            .orderBy('seq')
            .execute();
          out.push({
            subscription_id: id,
            user_id: before.user_id,
            status: { from: before.status, to: after.status },
            period_end: { from: before.current_period_end.toISOString(), to: after.current_period_end.toISOString() },
            ledger: entries.map((e) => ({ type: e.type, amount: e.amount, reason: e.reason })),
          });
          throw new RolledBack();
        });
      } catch (err) {
        if (err instanceof RolledBack || err instanceof Skipped) continue;
        out.push({ subscription_id: id, error: (err as Error).message });
      }
    }
    return out;
  }

  /**
   * The server's way: one background job per due subscription and due instant (the dedupe key
   * makes a tick that repeats itself enqueue nothing new), run by the queue's workers with their
   * attempts and backoff. Returns how many were enqueued.
   */
  async enqueueDue(queue: QueueService, at: Date, limit = 500): Promise<number> {
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
    const rows = await subscriptionsDue(this.database.db, at, limit, TRIAL_ENDING_NOTICE_MS);
    return rows.map((r) => {
      const notice = r.status === 'trialing' && r.trial_end && !r.trial_ending_told_at ? new Date(r.trial_end.getTime() - TRIAL_ENDING_NOTICE_MS) : null;
      const candidates = [r.current_period_end, r.cycles_due_at, r.status === 'trialing' ? r.trial_end : null, notice]
        .filter((d): d is Date => d !== null && d <= at)
        .map((d) => d.getTime());
      return { id: r.id, due_at: new Date(Math.min(...candidates)) };
    });
  }

  /** One subscription, in its own transaction, claimed with SKIP LOCKED (false: another runner has it). */
  private async advanceOne(id: string, at: Date): Promise<boolean> {
    return this.database.db.transaction().execute(async (trx) => {
      if (!(await subscriptionClaim(trx, id))) return false;
      await this.advance(trx, id, at);
      return true;
    });
  }

  /** Brings one (locked) subscription up to `at`, period by period. */
  private async advance(trx: Executor, id: string, at: Date): Promise<void> {
    for (let guard = 0; guard < 1000; guard++) {
      const sub = await lockSubscription(trx, id);
      if (sub.status === 'canceled') return;
      if (sub.status === 'trialing' && sub.trial_end && !sub.trial_ending_told_at && sub.trial_end.getTime() - TRIAL_ENDING_NOTICE_MS <= at.getTime()) {
        // Marked even when the scheduler comes too late to tell it (the trial already ended), so
        // it is never due again; told only while the trial is still running.
        await subscriptionUpdate(trx, id, { trial_ending_told_at: at });
        if (sub.trial_end > at) await this.events.tell(trx, 'subscription.trial_ending', id);
        continue;
      }
      if (sub.status === 'trialing' && sub.trial_end && sub.trial_end <= at) {
        // A trial of a free plan simply continues; a paid one needs its payment (activate / provider).
        const plan = await this.catalog.requirePlan(trx, sub.plan_id);
        // An interval the plan does not price (null) is not free.
        const price = priceOf(plan, sub.billing_interval);
        const next = price === 0 ? 'active' : sub.provider ? 'trialing' : 'past_due';
        await subscriptionUpdate(trx, id, { status: next });
        await this.events.pastDueIf(trx, id, sub.status, next);
        if (price === 0 || !sub.provider) continue;
      }
      if (sub.current_period_end <= at) {
        const end = sub.current_period_end;
        if (sub.cancel_at_period_end || sub.status === 'past_due') {
          await this.cycles.end(trx, sub, end, sub.cancel_at_period_end ? 'canceled at period end' : 'unpaid at period end');
          return;
        }
        if (!sub.provider) {
          // Never renewed for free: a user's own subscription only while its plan stays free, any
          // other only on an interval the plan offers (one made before 0008 may not be).
          const price = priceOf(await this.catalog.requirePlan(trx, sub.plan_id), sub.billing_interval);
          if (sub.self_service ? price !== 0 : price === null) {
            await this.cycles.end(trx, sub, end, price === null ? 'the plan does not offer this interval' : 'the plan is no longer free');
            return;
          }
        }
        if (sub.provider) {
          // The provider renews (a paid invoice arrives through payments); without one, past_due.
          if (at.getTime() - end.getTime() >= PROVIDER_GRACE_MS) {
            await subscriptionUpdate(trx, id, { status: 'past_due' });
            await this.events.pastDueIf(trx, id, sub.status, 'past_due');
          }
          await this.cycles.open(trx, id, at);
          return;
        }
        await this.cycles.closePeriod(trx, sub, end);
        const months = monthsOf(sub.billing_interval);
        const next = windowAt(sub.anchor_at, months, end);
        await subscriptionUpdate(trx, id, { current_period_start: next.start, current_period_end: next.end });
        await this.cycles.open(trx, id, next.start);
        await this.events.tell(trx, 'subscription.renewed', id);
        continue;
      }
      await this.cycles.open(trx, id, at);
      return;
    }
  }
}
