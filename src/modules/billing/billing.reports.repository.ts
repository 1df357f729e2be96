import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';
import type { UsageCounterRow } from './billing.js';

/**
 * What a user's usage reports read (GET /v1/users/:id/usage and /events): plain reads of the rows
 * the usage path writes (billing.usage-sql.ts), newest first.
 */

/** The user's counters of one window kind, newest window first (at most 1,000). */
export async function usageCounterList(
  db: Executor,
  userId: string,
  filter: { window: string; metric?: string | undefined; since?: Date | undefined },
): Promise<UsageCounterRow[]> {
  let q = db
    .selectFrom('usage_counters')
    .selectAll()
    .where('user_id', '=', userId)
    .where('window', '=', filter.window)
    .orderBy('window_start', 'desc')
    .orderBy('metric')
    .limit(1000);
  if (filter.metric) q = q.where('metric', '=', filter.metric);
  if (filter.since) q = q.where('window_start', '>=', filter.since);
  return q.execute();
}

/** A page of the user's usage events with the columns an answer is rebuilt from (eventAnswer). */
export async function usageEventPage(db: Executor, userId: string, page: PageRequest) {
  let q = db
    .selectFrom('usage_events')
    .select(['id', 'user_id', 'workspace_id', 'metric', 'quantity', 'action_hash', 'cost', 'charged', 'free_units', 'overage', 'transaction_id', 'subscription_id', 'result'])
    .select(cursorColumn('usage_events').as('cursor_us'))
    .where('user_id', '=', userId)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit + 1);
  if (page.after) q = q.where(cursorBefore('usage_events', page.after));
  return q.execute();
}
