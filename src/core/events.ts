import type { Executor } from '../db/database.js';
import type { RunStatement } from '../db/statements.js';

/**
 * What Tally tells the app (docs/webhooks-out.md). A closed list: each type has a stable name and
 * a versioned body; adding one is adding it here and to the doc.
 */
export const EVENT_TYPES = [
  'credits.granted',
  'credits.low',
  'credits.depleted',
  'hold.expired',
  'job.completed',
  'job.failed',
  'subscription.created',
  'subscription.renewed',
  'subscription.past_due',
  'subscription.canceled',
  'subscription.trial_ending',
  'payment.succeeded',
  'payment.refunded',
  'payment.disputed',
  'payment.unmatched',
  'budget_guard.alert',
  'budget_guard.tripped',
  'usage.quota_exhausted',
  'deployment.succeeded',
  'deployment.failed',
  'code_execution.completed',
  'code_execution.failed',
  'webhook.test',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface DomainEvent {
  type: EventType;
  /** The body's `data`: the object the event is about, as the API shows it. */
  data: Record<string, unknown>;
  userId?: string | null;
  workspaceId?: string | null;
}

/**
 * Where modules report what happened. `emit` runs in the caller's transaction, so an event is
 * recorded exactly when its change commits.
 */
export interface EventSink {
  emit(trx: Executor, event: DomainEvent): Promise<void>;
  /**
   * Several events in one statement, on the caller's transaction `run` (the ledger's batches: a
   * batch collects its events and writes them together, one round trip whatever their number).
   */
  record(run: RunStatement, events: readonly DomainEvent[]): Promise<void>;
}

/** For compositions without outgoing webhooks (and unit tests). */
export const NO_EVENTS: EventSink = { emit: async () => {}, record: async () => {} };
