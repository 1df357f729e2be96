import type { EventSink } from '../../core/events.js';
import type { Executor } from '../../db/database.js';
import { subscriptionOf } from './billing.js';
import { subscriptionFind } from './billing.subscriptions.repository.js';

export type SubscriptionEventType = 'subscription.created' | 'subscription.renewed' | 'subscription.past_due' | 'subscription.canceled' | 'subscription.trial_ending';

/** How long before its trial ends a trialing subscription tells `subscription.trial_ending` (Stripe's 3 days). */
export const TRIAL_ENDING_NOTICE_MS = 3 * 86_400_000;

/**
 * Tells the app what happened to a subscription (docs/webhooks-out.md), in the transaction that
 * did it; the body is the subscription as `GET /v1/subscriptions/:id` shows it after the change.
 */
export class SubscriptionEvents {
  constructor(private readonly sink: EventSink) {}

  async tell(trx: Executor, type: SubscriptionEventType, id: string): Promise<void> {
    const row = await subscriptionFind(trx, id);
    if (!row) throw new Error(`subscription ${id} vanished inside its own transaction`);
    await this.sink.emit(trx, { type, data: subscriptionOf(row), userId: row.user_id });
  }

  /** `subscription.past_due` when the subscription became past due now (not when it already was). */
  async pastDueIf(trx: Executor, id: string, before: string, after: string): Promise<void> {
    if (after === 'past_due' && before !== 'past_due') await this.tell(trx, 'subscription.past_due', id);
  }
}
